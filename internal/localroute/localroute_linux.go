package localroute

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Watcher asks the calling thread's namespace for routes and hears its
// route events. Open it before adding the addresses so that no event is
// missed between the add and the wait.
type Watcher struct {
	c, events *netlink.Conn
}

// Watch opens a Watcher in the calling thread's network namespace.
func Watch() (*Watcher, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink: %w", err)
	}
	events, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("rtnetlink: %w", err)
	}
	for _, g := range []uint32{unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE} {
		if err := events.JoinGroup(g); err != nil {
			c.Close()
			events.Close()
			return nil, fmt.Errorf("rtnetlink: join route events: %w", err)
		}
	}
	return &Watcher{c: c, events: events}, nil
}

// Close releases the watcher's netlink sockets.
func (w *Watcher) Close() error {
	return errors.Join(w.c.Close(), w.events.Close())
}

// Conn is the watcher's request socket, for callers that add the
// addresses over the same rtnetlink connection.
func (w *Watcher) Conn() *netlink.Conn { return w.c }

// Wait returns once the kernel routes every address of addrs as local
// (RTM_GETROUTE answers RTN_LOCAL), or fails naming the first address
// still without its local route after timeout.
func (w *Watcher) Wait(addrs []netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, a := range addrs {
		if err := w.waitOne(a, deadline, timeout); err != nil {
			return err
		}
	}
	return nil
}

// waitOne waits for a's local route, waking on route events.
func (w *Watcher) waitOne(a netip.Addr, deadline time.Time, timeout time.Duration) error {
	for {
		local, err := isLocal(w.c, a)
		if err != nil {
			return err
		}
		if local {
			return nil
		}
		if err := w.events.SetReadDeadline(deadline); err != nil {
			return err
		}
		if _, err := w.events.Receive(); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("address %s: no local route after %v", a, timeout)
			}
			return fmt.Errorf("rtnetlink: route events: %w", err)
		}
	}
}

// isLocal asks the kernel for its route to a (ip route get) and reports
// whether it is a local one. No route yet is false, not an error.
func isLocal(c *netlink.Conn, a netip.Addr) (bool, error) {
	family, bits := unix.AF_INET, 32
	if a.Is6() {
		family, bits = unix.AF_INET6, 128
	}
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
	msg := make([]byte, unix.SizeofRtMsg)
	msg[0], msg[1] = byte(family), byte(bits)
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.RTA_DST, a.AsSlice())
	attrs, err := ae.Encode()
	if err != nil {
		return false, err
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETROUTE, Flags: netlink.Request},
		Data:   append(msg, attrs...),
	})
	if err != nil {
		var oe *netlink.OpError
		if errors.As(err, &oe) && (errors.Is(oe.Err, unix.ENETUNREACH) || errors.Is(oe.Err, unix.EHOSTUNREACH) || errors.Is(oe.Err, unix.EINVAL)) {
			return false, nil // no route yet
		}
		return false, fmt.Errorf("route get %s: %w", a, err)
	}
	for _, m := range msgs {
		if len(m.Data) >= unix.SizeofRtMsg && m.Data[7] == unix.RTN_LOCAL {
			return true, nil
		}
	}
	return false, nil
}
