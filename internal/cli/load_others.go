//go:build !linux

package cli

import (
	"net"
	"os"
	"syscall"
	"time"
)

// workerProcAttr: only Linux has a parent-death signal; elsewhere a worker
// notices its parent is gone when its stdin closes.
func workerProcAttr() *syscall.SysProcAttr { return nil }

// isTerminal reports false off Linux: the progress line is a convenience.
func isTerminal(*os.File) bool { return false }

// cpuTime is not measured off Linux; the report shows 0.
func cpuTime() time.Duration { return 0 }

// peerGone is not known off Linux: the sink keeps connections until it ends.
func peerGone(net.Conn) bool { return false }
