package cli

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// workerProcAttr makes a load worker die with the process that started it
// (PR_SET_PDEATHSIG), so an ended or killed tuple load leaves no worker.
func workerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
