//go:build unix

package cli

import (
	"os/exec"
	"syscall"
)

// execve replaces the process with path (it returns only on failure).
func execve(path string, args, env []string) error { return syscall.Exec(path, args, env) }

// signalNumber is the signal that ended a child, for a shell-style 128+N status.
func signalNumber(ee *exec.ExitError) int {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return int(ws.Signal())
	}
	return 0
}
