package dial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/tuple-net/tuple/sockopt"
)

// ListenGroup opens n TCP listeners on address that share its port with
// SO_REUSEPORT; the kernel spreads new connections across them by a hash of
// the four-tuple, so each listener can be served by its own goroutine or
// process (pass (*net.TCPListener).File to a child). When address has port 0
// the first listener's port is used for the others. On error every listener
// already opened is closed.
func ListenGroup(ctx context.Context, network, address string, n int) ([]net.Listener, error) {
	if n < 1 {
		return nil, fmt.Errorf("listen group on %s: want at least 1 listener, got %d", address, n)
	}
	opts := sockopt.Options{ReusePort: true}
	if err := opts.Check(); err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	lc := net.ListenConfig{Control: opts.Control}
	group := make([]net.Listener, 0, n)
	fail := func(err error) ([]net.Listener, error) {
		for _, l := range group {
			l.Close()
		}
		return nil, err
	}
	for i := 0; i < n; i++ {
		l, err := lc.Listen(ctx, network, address)
		if err != nil {
			return fail(err)
		}
		group = append(group, l)
		if i == 0 {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return fail(err)
			}
			ta, ok := l.Addr().(*net.TCPAddr)
			if !ok {
				return fail(errors.New("listen group: network " + network + " is not TCP"))
			}
			address = net.JoinHostPort(host, strconv.Itoa(ta.Port))
		}
	}
	return group, nil
}
