package cli

import (
	"os"
	"syscall"
	"time"

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

// cpuTime is the process's CPU time so far, user and system (where a
// connect() spends it).
func cpuTime() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
