package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/tuple-net/tuple/internal/sockaddr"
	"golang.org/x/sys/unix"
)

// dialBroker connects to the broker's socket, bounded by ctx.
func (c *Client) dialBroker(ctx context.Context) (*net.UnixConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unixpacket", c.path())
	if err != nil {
		return nil, &UnreachableError{Path: c.path(), Err: err}
	}
	uc := conn.(*net.UnixConn)
	if dl, ok := ctx.Deadline(); ok {
		if err := uc.SetDeadline(dl); err != nil {
			uc.Close()
			return nil, fmt.Errorf("broker %s: %w", c.path(), err)
		}
	}
	return uc, nil
}

// exchange sends one request and reads one answer with at most one
// descriptor (-1 when none came).
func (c *Client) exchange(ctx context.Context, r *Request) (*Response, int, error) {
	conn, err := c.dialBroker(ctx)
	if err != nil {
		return nil, -1, err
	}
	defer conn.Close()
	// The past deadline wakes a blocked read; it fails only once conn is
	// closed, which wakes the read as well.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	b, err := json.Marshal(r)
	if err != nil {
		return nil, -1, err
	}
	if _, err := conn.Write(b); err != nil {
		return nil, -1, fmt.Errorf("broker %s: send: %w", c.path(), err)
	}
	size := 64 << 10
	if r.Op == OpList {
		size = maxResponse
	}
	buf := make([]byte, size)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
	fds := rights(oob[:oobn])
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	if err != nil {
		closeAll()
		return nil, -1, fmt.Errorf("broker %s: receive: %w", c.path(), err)
	}
	if n == 0 {
		closeAll()
		return nil, -1, fmt.Errorf("broker %s: closed the connection without an answer", c.path())
	}
	if flags&unix.MSG_CTRUNC != 0 {
		closeAll()
		// The kernel drops a descriptor the receiver has no room for.
		return nil, -1, fmt.Errorf("broker %s: the granted descriptor was dropped on receipt (is the process out of descriptors?): %w", c.path(), syscall.EMFILE)
	}
	resp, err := ParseResponse(buf[:n])
	if err != nil {
		closeAll()
		return nil, -1, err
	}
	if !resp.OK {
		closeAll()
		return nil, -1, &DeniedError{Reason: resp.Error}
	}
	if len(fds) > 1 {
		closeAll()
		return nil, -1, fmt.Errorf("broker %s: sent %d descriptors, want at most 1", c.path(), len(fds))
	}
	if len(fds) == 0 {
		return resp, -1, nil
	}
	return resp, fds[0], nil
}

func rights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if f, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

func (c *Client) roundTrip(ctx context.Context, r *Request) (*Response, error) {
	resp, fd, err := c.exchange(ctx, r)
	if fd >= 0 {
		unix.Close(fd)
	}
	return resp, err
}

func (c *Client) socket(ctx context.Context, r *Request) (*os.File, *Response, error) {
	resp, fd, err := c.exchange(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	if fd < 0 {
		return nil, nil, fmt.Errorf("broker %s: granted without a descriptor", c.path())
	}
	// Non-blocking, so the file joins Go's poller (os.NewFile checks).
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, nil, os.NewSyscallError("fcntl", err)
	}
	name := fmt.Sprintf("broker:%s/%s", r.Proto, resp.Local)
	return os.NewFile(uintptr(fd), name), resp, nil
}

// connectFile connects the bound socket in f to remote and returns it as a
// net.Conn; f stays the caller's to close.
func connectFile(ctx context.Context, f *os.File, remote netip.AddrPort) (net.Conn, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	sa := sockaddr.From(remote)
	var cerr error
	if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sa) }); err != nil {
		return nil, err
	}
	if cerr == unix.EINPROGRESS {
		if dl, ok := ctx.Deadline(); ok {
			if err := f.SetWriteDeadline(dl); err != nil {
				return nil, err
			}
		}
		// As in exchange: a failure here means f is closed, which wakes
		// the wait too.
		stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
		defer stop()
		cerr = nil
		werr := rc.Write(func(fd uintptr) bool {
			v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
			switch {
			case err != nil:
				cerr = err
			case v != 0:
				cerr = syscall.Errno(v)
			default:
				if _, err := unix.Getpeername(int(fd)); err == unix.ENOTCONN {
					return false // not yet: wait for writability
				}
			}
			return true
		})
		if werr != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, werr
		}
		if err := f.SetWriteDeadline(time.Time{}); err != nil {
			return nil, err
		}
	}
	if cerr != nil {
		return nil, os.NewSyscallError("connect", cerr)
	}
	return net.FileConn(f)
}
