package reexec

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// StayTied sets the parent-death signal again and checks the parent is
// still there. A helper calls it after changing its credentials: setuid
// clears PR_SET_PDEATHSIG (commit_creds), and without it a helper could
// outlive an interrupted parent.
func StayTied() error {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl PR_SET_PDEATHSIG", err)
	}
	if parent != 0 && os.Getppid() != parent {
		return ErrParentGone
	}
	return nil
}
