package socktab

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// dumpNetlink lists the sockets of q with sock_diag, one dump per protocol
// and family. The netlink sockets are opened on the calling goroutine (so
// they belong to the calling thread's network namespace); the dumps then
// run in parallel and each message is decoded as it arrives.
func dumpNetlink(ctx context.Context, q Query) ([]Socket, error) {
	var reqs []diagRequest
	for _, p := range []struct {
		on    bool
		proto Proto
	}{{q.TCP, TCP}, {q.UDP, UDP}} {
		if !p.on {
			continue
		}
		for _, fam := range []uint8{afINET, afINET6} {
			reqs = append(reqs, diagRequest{Family: fam, Protocol: p.proto, States: q.States,
				LocalPort: q.LocalPort, RemotePort: q.RemotePort})
		}
	}
	conns := make([]*netlink.Conn, 0, len(reqs))
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range reqs {
		c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
		if err != nil {
			return nil, fmt.Errorf("netlink sock_diag: %w", err)
		}
		conns = append(conns, c)
	}
	if deadline, ok := ctx.Deadline(); ok {
		for _, c := range conns {
			c.SetDeadline(deadline)
		}
	}
	stop := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.SetDeadline(aLongTimeAgo)
		}
	})
	defer stop()

	results := make([][]Socket, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = dumpOne(conns[i], reqs[i])
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := 0
	for i, err := range errs {
		if err != nil {
			return nil, err
		}
		n += len(results[i])
	}
	if len(results) == 1 {
		return results[0], nil
	}
	out := make([]Socket, 0, n)
	for _, r := range results {
		out = append(out, r...)
	}
	return out, nil
}

// dumpOne runs one dump. A kernel that rejects the port bytecode (EINVAL)
// is asked again without it; the caller filters ports itself anyway.
func dumpOne(c *netlink.Conn, r diagRequest) ([]Socket, error) {
	socks, err := dumpRequest(c, r)
	if errors.Is(err, unix.EINVAL) && (r.LocalPort != 0 || r.RemotePort != 0) {
		r.LocalPort, r.RemotePort = 0, 0
		socks, err = dumpRequest(c, r)
	}
	return socks, err
}

func dumpRequest(c *netlink.Conn, r diagRequest) ([]Socket, error) {
	fam := "inet"
	if r.Family == afINET6 {
		fam = "inet6"
	}
	_, err := c.Send(netlink.Message{
		Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Request | netlink.Dump},
		Data:   r.marshal(),
	})
	if err != nil {
		return nil, fmt.Errorf("netlink sock_diag %s %s dump: %w", r.Protocol, fam, err)
	}
	var socks []Socket
	for m, err := range c.ReceiveIter() {
		if err != nil {
			return nil, fmt.Errorf("netlink sock_diag %s %s dump: %w", r.Protocol, fam, err)
		}
		if m.Header.Type != sockDiagByFamily {
			continue
		}
		socks = append(socks, Socket{})
		if err := parseInetDiagMsg(m.Data, r.Protocol, &socks[len(socks)-1]); err != nil {
			return nil, fmt.Errorf("netlink sock_diag %s %s dump: %w", r.Protocol, fam, err)
		}
	}
	return socks, nil
}
