package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// startChild starts cmd and returns how to wait for it. Go's cmd.Wait
// blocks an OS thread in waitid(2) for as long as the child lives, so a
// server with a thousand live -e children held a thousand threads, and
// when the kernel refused the next thread the Go runtime aborted the whole
// server. Here the wait is on a pidfd through the network poller: a live
// child costs one descriptor and no thread, and cmd.Wait runs only once
// the child has exited, when it returns at once.
func startChild(cmd *exec.Cmd) (wait func() error, err error) {
	pidfd := -1
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.PidFD = &pidfd
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if pidfd < 0 { // a kernel without pidfds: the thread per child stays
		return cmd.Wait, nil
	}
	return func() error {
		awaitExit(pidfd)
		return cmd.Wait()
	}, nil
}

// awaitExit returns when the process behind pidfd has exited (the pidfd
// turns readable), or at once if the descriptor cannot be polled; it
// closes pidfd.
func awaitExit(pidfd int) {
	if err := unix.SetNonblock(pidfd, true); err != nil {
		unix.Close(pidfd)
		return
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return err != nil || n > 0
	})
}

// Descriptors one connection holds: the socket alone for a relay; with -e
// also its duplicate while the child starts, the pidfd, and exec's pipes.
const (
	relayConnFDs = 1
	execConnFDs  = 4
	reservedFDs  = 64 // stdio, the listener, the runtime's own
	// reservedTasks is headroom under RLIMIT_NPROC for the threads the
	// Go runtime may still start: the limit counts threads too.
	reservedTasks = 16
)

// defaultMaxConns derives listen -k's --max-conns from the limits the
// kernel enforces: RLIMIT_NOFILE (descriptors per connection) and, for -e
// without root, RLIMIT_NPROC less the tasks the uid already runs (each
// child is at least one). It says which limit decided.
func defaultMaxConns(execMode bool) (int, string) {
	var nofile unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile); err != nil {
		return 1024, "RLIMIT_NOFILE unreadable"
	}
	per := relayConnFDs
	if execMode {
		per = execConnFDs
	}
	n := (int(min(nofile.Cur, 1<<30)) - reservedFDs) / per
	reason := fmt.Sprintf("RLIMIT_NOFILE %d, %d descriptors per connection", nofile.Cur, per)
	var nproc unix.Rlimit
	if execMode && os.Geteuid() != 0 && unix.Getrlimit(unix.RLIMIT_NPROC, &nproc) == nil && nproc.Cur != unix.RLIM_INFINITY {
		uid := os.Getuid()
		tasks := tasksOfUID(uid)
		if avail := int(min(nproc.Cur, 1<<30)) - tasks - reservedTasks; avail < n {
			n = avail
			reason = fmt.Sprintf("RLIMIT_NPROC %d, %d tasks of uid %d running, %d kept for threads", nproc.Cur, tasks, uid, reservedTasks)
		}
	}
	return max(n, 1), reason
}

// tasksOfUID counts the threads of every process whose real uid is uid,
// as RLIMIT_NPROC counts them.
func tasksOfUID(uid int) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/status")
	total := 0
	for _, path := range dirs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		real, threads := -1, 0
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := sc.Bytes()
			switch {
			case bytes.HasPrefix(line, []byte("Uid:")):
				if f := bytes.Fields(line[4:]); len(f) > 0 {
					real, _ = strconv.Atoi(string(f[0]))
				}
			case bytes.HasPrefix(line, []byte("Threads:")):
				threads, _ = strconv.Atoi(string(bytes.TrimSpace(line[8:])))
			}
		}
		if real == uid {
			total += threads
		}
	}
	return total
}

// nofileLimit is the soft RLIMIT_NOFILE (which Go raises to the hard
// limit at start).
func nofileLimit() int {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 1024
	}
	return int(min(r.Cur, 1<<30))
}
