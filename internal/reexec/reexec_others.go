//go:build !linux

package reexec

import (
	"os"
	"syscall"
)

// procAttr: only Linux has a parent-death signal; elsewhere a helper
// notices its parent is gone when its pipes close.
func procAttr() *syscall.SysProcAttr { return nil }

// StayTied checks the parent is still there; off Linux there is no
// parent-death signal to set again.
func StayTied() error {
	if parent != 0 && os.Getppid() != parent {
		return ErrParentGone
	}
	return nil
}
