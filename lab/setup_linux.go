package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// loopbackIndex is lo's ifindex: the kernel registers loopback first in
// every network namespace (LOOPBACK_IFINDEX).
const loopbackIndex = 1

// addrWait bounds the wait for an added address's local route.
const addrWait = 3 * time.Second

// setupNamespace brings lo up and adds addrs to it, over rtnetlink from the
// calling thread's namespace, and returns once every address is usable:
// its local route is in place. The messages are two fixed headers and two
// attributes, so they are written here rather than pulling in a full
// rtnetlink library.
func setupNamespace(addrs []string) error {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	defer c.Close()
	// Route events, joined before any address is added so none is missed:
	// an IPv6 address gets its local route from a work queue after
	// RTM_NEWADDR has returned (addrconf's DAD work, even with NODAD).
	events, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return fmt.Errorf("rtnetlink: %w", err)
	}
	defer events.Close()
	for _, g := range []uint32{unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE} {
		if err := events.JoinGroup(g); err != nil {
			return fmt.Errorf("rtnetlink: join route events: %w", err)
		}
	}
	// struct ifinfomsg: family, pad, type, index, flags, change.
	link := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(link[4:], loopbackIndex)
	binary.NativeEndian.PutUint32(link[8:], unix.IFF_UP)
	binary.NativeEndian.PutUint32(link[12:], unix.IFF_UP)
	if _, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_NEWLINK, Flags: netlink.Request | netlink.Acknowledge},
		Data:   link,
	}); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	for _, s := range addrs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return err
		}
		family, bits := unix.AF_INET, 32
		if a.Is6() {
			family, bits = unix.AF_INET6, 128
		}
		// struct ifaddrmsg: family, prefixlen, flags, scope, index.
		msg := make([]byte, unix.SizeofIfAddrmsg)
		msg[0], msg[1], msg[2], msg[3] = byte(family), byte(bits), unix.IFA_F_NODAD, unix.RT_SCOPE_HOST
		binary.NativeEndian.PutUint32(msg[4:], loopbackIndex)
		ae := netlink.NewAttributeEncoder()
		ae.Bytes(unix.IFA_LOCAL, a.AsSlice())
		ae.Bytes(unix.IFA_ADDRESS, a.AsSlice())
		ae.Uint32(unix.IFA_FLAGS, unix.IFA_F_NODAD)
		attrs, err := ae.Encode()
		if err != nil {
			return err
		}
		if _, err := c.Execute(netlink.Message{
			Header: netlink.Header{Type: unix.RTM_NEWADDR,
				Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl},
			Data: append(msg, attrs...),
		}); err != nil {
			return fmt.Errorf("add %s to lo: %w", a, err)
		}
	}
	deadline := time.Now().Add(addrWait)
	for _, s := range addrs {
		a, _ := netip.ParseAddr(s)
		if err := waitLocalRoute(c, events, a, deadline); err != nil {
			return err
		}
	}
	return nil
}

// waitLocalRoute returns once the kernel routes a as a local address
// (RTM_GETROUTE answers RTN_LOCAL), waking on route events rather than on
// a timer, or fails at deadline.
func waitLocalRoute(c, events *netlink.Conn, a netip.Addr, deadline time.Time) error {
	for {
		local, err := isLocalRoute(c, a)
		if err != nil {
			return err
		}
		if local {
			return nil
		}
		if err := events.SetReadDeadline(deadline); err != nil {
			return err
		}
		if _, err := events.Receive(); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("address %s on lo: no local route after %v", a, addrWait)
			}
			return fmt.Errorf("rtnetlink: route events: %w", err)
		}
	}
}

// isLocalRoute asks the kernel for its route to a (ip route get).
func isLocalRoute(c *netlink.Conn, a netip.Addr) (bool, error) {
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

// loopbackAddrs lists the addresses on lo, as the kernel reports them.
func loopbackAddrs() ([]string, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETADDR, Flags: netlink.Request | netlink.Dump},
		Data:   make([]byte, unix.SizeofIfAddrmsg), // all families
	})
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var out []string
	for _, m := range msgs {
		p, index, err := parseIfAddr(m.Data)
		if err != nil {
			return nil, err
		}
		if index == loopbackIndex {
			out = append(out, p.String())
		}
	}
	return out, nil
}
