package lab

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/localroute"
)

// loopbackIndex is lo's ifindex: the kernel registers loopback first in
// every network namespace (LOOPBACK_IFINDEX).
const loopbackIndex = 1

// addrWait bounds the wait for an added address's local route.
const addrWait = 3 * time.Second

// setupNamespace brings lo up and adds addrs to it, over rtnetlink from the
// calling thread's namespace, and returns once every address is usable:
// its local route is in place (localroute). The messages are two fixed
// headers and two attributes, so they are written here rather than pulling
// in a full rtnetlink library.
func setupNamespace(addrs []string) error {
	// Route events are heard from before any address is added, so none is
	// missed.
	w, err := localroute.Watch()
	if err != nil {
		return err
	}
	defer w.Close()
	c := w.Conn()
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
	var added []netip.Addr
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
		added = append(added, a)
	}
	if err := w.Wait(added, addrWait); err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	return nil
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
