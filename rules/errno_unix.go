//go:build unix

package rules

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// platformErrnoName is e's C name from the platform's errno list, "" for
// one it does not know.
func platformErrnoName(e syscall.Errno) string { return unix.ErrnoName(e) }

// platformErrno is the errno the platform names n, 0 for none. The
// platform's list is searched by number (errnos stay below 256 on every
// Unix Go supports); x/sys has no lookup by name.
func platformErrno(n string) syscall.Errno {
	if n == "" {
		return 0
	}
	for e := syscall.Errno(1); e < 256; e++ {
		if unix.ErrnoName(e) == n {
			return e
		}
	}
	return 0
}
