package load

import (
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cpuTime is the process's CPU time so far, user and system (where a
// connect() spends it).
func cpuTime() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peerGone reports whether the peer of TCP connection c has closed or reset
// it (the socket is in CLOSE, CLOSE_WAIT or LAST_ACK).
func peerGone(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var state uint8
	var infoErr error
	if err := raw.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		info, infoErr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if infoErr == nil {
			state = info.State
		}
	}); err != nil || infoErr != nil {
		return false
	}
	switch state {
	case unix.BPF_TCP_CLOSE, unix.BPF_TCP_CLOSE_WAIT, unix.BPF_TCP_LAST_ACK:
		return true
	}
	return false
}

// lingerZero sets SO_LINGER 0 on a socket before it connects, so every
// close of it, the kernel's when the process is killed and Go's when a
// cancelled dial's handshake completes included, is a reset: a load never
// leaves TIME_WAIT four-tuples behind.
func lingerZero(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}); err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt SO_LINGER", serr)
}
