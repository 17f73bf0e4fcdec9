package dial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/tuple-net/tuple/reuseport"
	"github.com/tuple-net/tuple/sockopt"
)

// A GroupOption changes how ListenGroup steers connections over its
// members; see package reuseport for the programs.
type GroupOption func(*groupConfig)

type groupConfig struct {
	steer   reuseport.Steering
	sup     *reuseport.Supervisor
	migrate bool
}

// SteerCPU makes member i serve the connections the kernel received on CPU
// i (a classic BPF program); CPUs without a member fall back to the hash.
// Members are created in index order and must stay open: closing one
// reorders the kernel's array.
func SteerCPU() GroupOption {
	return func(c *groupConfig) { c.steer, c.sup = reuseport.SteerCPU, nil }
}

// SteerMap places member i at index i of s and attaches s's program, so s
// can drain and replace members by index. s needs at least n indices.
func SteerMap(s *reuseport.Supervisor) GroupOption {
	return func(c *groupConfig) { c.steer, c.sup = reuseport.SteerMap, s }
}

// Migrate keeps the kernel's hash steering and attaches a
// SELECT_OR_MIGRATE program, so closing a member moves its queued and
// half-open connections to a live member instead of resetting them (Linux
// 5.14+, root); only a handshake finishing at the instant of the close is
// still reset (docs/reuseport.md). With SteerMap, make the Supervisor with
// Migrate set instead.
func Migrate() GroupOption {
	return func(c *groupConfig) { c.migrate = true }
}

// ListenGroup opens n TCP listeners on address that share its port with
// SO_REUSEPORT; the kernel spreads new connections across them by a hash of
// the four-tuple, or as the options steer, so each listener can be served by
// its own goroutine or process (pass (*net.TCPListener).File to a child).
// Listeners are created in index order. When address has port 0 the first
// listener's port is used for the others. A steering program replaces any
// program the port's group already had. On error every listener already
// opened is closed.
func ListenGroup(ctx context.Context, network, address string, n int, opts ...GroupOption) ([]net.Listener, error) {
	if n < 1 {
		return nil, fmt.Errorf("listen group on %s: want at least 1 listener, got %d", address, n)
	}
	var cfg groupConfig
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case cfg.migrate && cfg.steer == reuseport.SteerCPU:
		return nil, fmt.Errorf("listen group on %s: cpu steering is classic BPF, which cannot migrate; set net.ipv4.tcp_migrate_req=1 instead", address)
	case cfg.migrate && cfg.steer == reuseport.SteerMap:
		return nil, fmt.Errorf("listen group on %s: with map steering, migrate through the Supervisor (SupervisorOptions.Migrate)", address)
	case cfg.steer == reuseport.SteerMap && (cfg.sup == nil || cfg.sup.Size() < n):
		return nil, fmt.Errorf("listen group on %s: map steering needs a Supervisor with at least %d indices", address, n)
	}
	opts2 := sockopt.Options{ReusePort: true}
	if err := opts2.Check(); err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	lc := net.ListenConfig{Control: opts2.Control}
	// Go listens with MPTCP by default where the kernel has it; an MPTCP
	// socket takes no reuseport program (EOPNOTSUPP) and no place in a
	// REUSEPORT_SOCKARRAY, so the group is plain TCP.
	lc.SetMultipathTCP(false)
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
	if err := steer(group, &cfg); err != nil {
		return fail(&net.OpError{Op: "listen", Net: network, Addr: group[0].Addr(), Err: err})
	}
	return group, nil
}

// steer attaches the configured program to the group.
func steer(group []net.Listener, cfg *groupConfig) error {
	first, ok := group[0].(*net.TCPListener)
	if !ok {
		return fmt.Errorf("steering needs *net.TCPListener, got %T", group[0])
	}
	switch {
	case cfg.steer == reuseport.SteerCPU:
		return reuseport.AttachCPU(first)
	case cfg.steer == reuseport.SteerMap:
		for i, l := range group {
			if err := cfg.sup.Place(i, l.(*net.TCPListener)); err != nil {
				return err
			}
		}
		return cfg.sup.Attach(first)
	case cfg.migrate:
		return reuseport.AttachMigrate(first)
	}
	return nil
}
