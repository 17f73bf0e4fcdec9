//go:build unix

package cli

import (
	"os"
	"syscall"
)

// offStdFD returns a duplicate of f (stdout or stderr) on another
// descriptor. Go kills the process with SIGPIPE (exit 141) when a write to
// descriptor 1 or 2 finds the pipe's reader gone (tuple ls | head); on any
// other descriptor the write just fails with EPIPE, and the command ends
// quietly with 0 (outputGone). signal.Notify(SIGPIPE) would do
// the same for every descriptor, but it starts a signal thread in every
// process, the lab's namespace helpers included.
func offStdFD(f *os.File) *os.File {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return f
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name())
}
