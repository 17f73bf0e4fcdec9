//go:build !linux

package broker

import (
	"context"
	"net"
	"net/netip"
	"os"

	"github.com/tuple-net/tuple/inet"
)

func notSupported() error {
	return inet.Unsupported("the socket broker (it needs Linux: SO_PEERCRED, SCM_RIGHTS, sock_diag)")
}

// ListenUnix is not supported on this platform.
func ListenUnix(path string, sf SocketFile) (*net.UnixListener, error) { return nil, notSupported() }

// ApplySocketFile is not supported on this platform.
func ApplySocketFile(path string, sf SocketFile) error { return notSupported() }

// SocketFileIDs is not supported on this platform.
func SocketFileIDs(sf SocketFile) (uid, gid int, err error) { return -1, -1, notSupported() }

// Serve is not supported on this platform.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error { return notSupported() }

func heldInodes(ctx context.Context, gs []LiveGrant) (map[uint64]bool, error) {
	return nil, notSupported()
}

func (c *Client) roundTrip(ctx context.Context, r *Request) (*Response, error) {
	return nil, notSupported()
}

func (c *Client) socket(ctx context.Context, r *Request) (*os.File, *Response, error) {
	return nil, nil, notSupported()
}

func connectFile(ctx context.Context, f *os.File, remote netip.AddrPort) (net.Conn, error) {
	return nil, notSupported()
}
