package socktab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/mdlayher/netlink"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/prefault"
	"golang.org/x/sys/unix"
)

// recvBufSize is the receive buffer for dumps. The kernel sizes each dump
// datagram after the largest buffer the reader has offered, capped at
// 32 KiB; fewer, larger datagrams mean fewer syscalls and fewer restarts of
// the kernel's hash walk.
const recvBufSize = 32 << 10

// recvBatch is the buffer a dump's receiver fills with two datagrams
// before it hands them to the decoder: a handoff wakes the other
// goroutine, dear on a virtual machine. Not more: every page of a buffer is
// new memory the first time the kernel writes it, and a fresh page costs
// 5-10 us on a virtual machine that shadows the guest's page tables. Three
// 256 KiB buffers made tuple ls -ta 1-2 ms slower at 10,000 sockets than
// three of 64 KiB (192 more page faults), and no faster at 40,000.
const recvBatch = 2 * recvBufSize

// dumpNetlink lists the sockets of q with sock_diag, into one slice sized
// from /proc's socket counters: TCP of both families in one walk of the
// kernel's tables (TCPDIAG_GETSOCK) where the kernel takes it, otherwise
// one dump per protocol and family. The netlink socket is opened on the
// calling goroutine, so it belongs to the calling thread's network
// namespace.
func dumpNetlink(ctx context.Context, q Query) ([]Socket, error) {
	return dump(ctx, q, parseInetDiagMsg)
}

// dumpRows is dumpNetlink in rows.
func dumpRows(ctx context.Context, q Query) ([]Row, error) {
	return dump(ctx, q, parseDiagRow)
}

// dump is dumpNetlink decoding each message with parse.
func dump[T element](ctx context.Context, q Query, parse func([]byte, inet.Proto, *T) error) ([]T, error) {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
	if err != nil {
		return nil, fmt.Errorf("netlink sock_diag: %w", err)
	}
	defer c.Close()
	if deadline, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(deadline); err != nil {
			return nil, fmt.Errorf("netlink sock_diag: %w", err)
		}
	}
	// The past deadline wakes a blocked receive; it fails only once c is
	// closed, which wakes it as well.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(aLongTimeAgo) })
	defer stop()

	// The counts size the table before the dump so it is never copied
	// while growing; partial counts will do for that.
	counts, _ := ReadSockstat(q.ProcRoot)
	est := counts.estimate(q)
	if q.LocalPort != 0 || q.RemotePort != 0 {
		// One port's sockets (who, --sport): a table sized for every
		// socket would be mostly pages faulted in for nothing.
		est = min(est, 4096)
	}
	socks := make([]T, 0, est+16)
	prefault.Slice(socks) // one madvise, not one page fault per page
	// Three receive buffers: one being filled, one being decoded, one
	// spare; a batch of datagrams each when the table is large enough to
	// fill them (an inet_diag message is about 100 bytes), one otherwise.
	// A dump that fits in one datagram (a scrape's bound-only sockets, its
	// UDP table) has nothing to overlap: one buffer.
	size := recvBufSize
	if est*100 > 2*recvBatch {
		size = recvBatch
	}
	bufs := [][]byte{make([]byte, size)}
	if est*100 > recvBufSize {
		bufs = append(bufs, make([]byte, size), make([]byte, size))
	}
	states := q.States
	if q.Filter != nil && q.Filter.States != 0 {
		states &= q.Filter.States
	}
	fail := func(err error) ([]T, error) {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	for _, p := range []struct {
		on    bool
		proto inet.Proto
	}{{q.TCP, inet.TCP}, {q.UDP, inet.UDP}} {
		if !p.on {
			continue
		}
		base := diagRequest{Protocol: p.proto, States: states,
			LocalPort: q.LocalPort, RemotePort: q.RemotePort, Filter: q.Filter.bytecode()}
		if p.proto == inet.TCP && q.Family == 0 && !noTCPDiagGetSock.Load() {
			// Every table walked once for both families: half the
			// kernel's work of two dumps (the walks skip the other
			// family's sockets but still visit them).
			n := len(socks)
			out, err := dumpOne(c, base, bufs, socks, parse)
			if err == nil {
				socks = out
				continue
			}
			if ctx.Err() != nil || errors.Is(err, errDumpInterrupted) {
				return fail(err)
			}
			// A kernel without the older request: per family from now on.
			noTCPDiagGetSock.Store(true)
			socks = socks[:n]
		}
		for _, fam := range []uint8{afINET, afINET6} {
			if (q.Family == inet.IPv4 && fam != afINET) || (q.Family == inet.IPv6 && fam != afINET6) {
				continue
			}
			r := base
			r.Family = fam
			socks, err = dumpOne(c, r, bufs, socks, parse)
			if err != nil {
				return fail(err)
			}
		}
	}
	return socks, nil
}

// noTCPDiagGetSock is set once the kernel refused a TCPDIAG_GETSOCK dump.
var noTCPDiagGetSock atomic.Bool

// dumpOne runs one dump. A kernel that rejects the bytecode (EINVAL) is
// asked again without it; Snapshot filters ports and expressions itself
// anyway. A dump the kernel marks interrupted (the table changed under it)
// is run once more; interrupted twice, the error is returned rather than a
// table that may miss sockets.
func dumpOne[T element](c *netlink.Conn, r diagRequest, bufs [][]byte, socks []T, parse func([]byte, inet.Proto, *T) error) ([]T, error) {
	n := len(socks)
	out, err := dumpRequest(c, r, bufs, socks, parse)
	if errors.Is(err, unix.EINVAL) && (r.LocalPort != 0 || r.RemotePort != 0 || len(r.Filter) > 0) {
		r.LocalPort, r.RemotePort, r.Filter = 0, 0, nil
		out, err = dumpRequest(c, r, bufs, socks[:n], parse)
	}
	if errors.Is(err, errDumpInterrupted) {
		out, err = dumpRequest(c, r, bufs, socks[:n], parse)
	}
	return out, err
}

// dumpRequest sends one dump request with mdlayher/netlink and reads the
// replies from the socket itself into bufs, decoding each inet_diag_msg
// straight into the next element of socks: the library's receive path
// would allocate and copy every datagram, and a dump of 40,000 sockets is
// about 1,000 of them.
func dumpRequest[T element](c *netlink.Conn, r diagRequest, bufs [][]byte, socks []T, parse func([]byte, inet.Proto, *T) error) ([]T, error) {
	fam := "inet"
	switch r.Family {
	case afINET6:
		fam = "inet6"
	case 0:
		fam = "inet and inet6"
	}
	wrap := func(err error) error {
		if err == nil {
			return nil
		}
		return fmt.Errorf("netlink sock_diag %s %s dump: %w", r.Protocol, fam, err)
	}
	req, err := c.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(r.msgType()), Flags: netlink.Request | netlink.Dump},
		Data:   r.marshal(),
	})
	if err != nil {
		return socks, wrap(err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return socks, wrap(err)
	}
	d := dumpReader[T]{seq: req.Header.Sequence, proto: r.Protocol, parse: parse, socks: socks}
	// The kernel fills each datagram inside the recvfrom that takes the
	// one before: a goroutine receives while this one decodes, so the
	// kernel's walk and the decoding overlap on two CPUs. The receiver
	// hands on a buffer once it has no room for another datagram, and
	// stops at the dump's end (or error) message; the decoder takes every
	// datagram it received, so the socket is left ready for the next dump.
	full := make(chan []byte, len(bufs))
	free := make(chan []byte, len(bufs))
	for _, b := range bufs {
		free <- b
	}
	var recvErr error // written before full is closed
	go func() {
		defer close(full)
		b := (<-free)[:0]
		for {
			var n int
			var rerr error
			room := cap(b) - len(b)
			err := rc.Read(func(fd uintptr) bool {
				// MSG_TRUNC: the datagram's whole length, so one cut
				// short by too little room is an error, not lost sockets.
				n, _, rerr = unix.Recvfrom(int(fd), b[len(b):cap(b)], unix.MSG_TRUNC)
				return rerr != unix.EAGAIN
			})
			if err == nil && rerr != nil {
				err = os.NewSyscallError("recvfrom", rerr)
			}
			if err == nil && n > room {
				err = fmt.Errorf("a %d-byte datagram in %d bytes of room", n, room)
			}
			if err != nil {
				if len(b) > 0 {
					full <- b
				}
				recvErr = err
				return
			}
			end := endsDump(b[len(b):len(b)+n], d.seq)
			b = b[:len(b)+n]
			if end || cap(b)-len(b) < recvBufSize {
				full <- b
				if end {
					return
				}
				b = (<-free)[:0]
			}
		}
	}()
	var decodeErr error
	for b := range full {
		if decodeErr == nil && !d.done {
			decodeErr = d.datagram(b)
		}
		free <- b[:cap(b)]
	}
	switch {
	case decodeErr != nil:
		return d.socks, wrap(decodeErr)
	case recvErr != nil:
		return d.socks, wrap(recvErr)
	case !d.done:
		return d.socks, wrap(errors.New("dump ended without NLMSG_DONE"))
	}
	return d.socks, wrap(d.err())
}
