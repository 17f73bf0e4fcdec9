//go:build linux

// Command dumpfloor is the least a Go program can do to list the TCP
// sockets of its network namespace: one sock_diag dump of every state
// (bound-only sockets included, as `tuple ls -ta` asks), each reply
// received and counted, nothing decoded, one line printed: the count.
// scripts/bench-scale times it beside `ss -tan` and `tuple ls -ta`: its
// ratio is the floor under tuple's at each scale, the Go runtime's
// start-up plus the kernel's walk of its hash tables, which no Go
// listing can go below. Linux only.
package main

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// tcpDiagGetSock is the older inet_diag request (TCPDIAG_GETSOCK): TCP of
// both families in one walk, as tuple asks for it.
const tcpDiagGetSock = 18

func main() {
	n, err := count()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dumpfloor:", err)
		os.Exit(1)
	}
	fmt.Println(n)
}

func count() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	// nlmsghdr (16 bytes), then inet_diag_req: family, src_len, dst_len,
	// ext (4 bytes), inet_diag_sockid (48), states (4), dbs (4).
	req := make([]byte, 16+60)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], tcpDiagGetSock)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1)
	binary.NativeEndian.PutUint32(req[16+52:], ^uint32(0)) // every state
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sendto: %w", err)
	}
	buf := make([]byte, 32<<10) // the kernel's largest dump datagram
	n := 0
	for {
		m, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return n, fmt.Errorf("recvfrom: %w", err)
		}
		for b := buf[:m]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b))
			switch binary.NativeEndian.Uint16(b[4:]) {
			case unix.NLMSG_DONE:
				return n, nil
			case unix.NLMSG_ERROR:
				errno := int32(binary.NativeEndian.Uint32(b[16:]))
				return n, fmt.Errorf("dump: %w", unix.Errno(-errno))
			}
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return n, fmt.Errorf("a %d-byte message in %d bytes", l, len(b))
			}
			n++
			b = b[min((l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
		}
	}
}
