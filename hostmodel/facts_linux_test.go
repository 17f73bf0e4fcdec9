package hostmodel

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/internal/testenv"
	"github.com/tuple-net/tuple/sockfacts"
	"github.com/tuple-net/tuple/sockopt"
	"github.com/tuple-net/tuple/socktab"
)

// TestOptionsFromRecordsMatchGetsockopt sets each option tuple shows
// (alone, and all at once) on TCP and UDP sockets of both families,
// listening, bound-only and accepted, and checks that the options a table
// takes from the socket iterator's records (Facts.Options as
// socktab.Query.OptionsFrom) equal those getsockopt reads through the
// owner's descriptor, option by option, reasons included; and that they
// come from the records: with no owner found they are still all known.
func TestOptionsFromRecordsMatchGetsockopt(t *testing.T) {
	ns := netnstest.New(t)
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		testenv.Missing(t, "needs kernel BTF (/sys/kernel/btf/vmlinux): "+err.Error())
	}
	ns.IP(t, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	cases := []sockopt.Options{
		{},
		{ReuseAddr: true},
		{ReusePort: true},
		{Freebind: true},
		{BindAddressNoPort: true},
		{Device: "lo"},
		{Device: "v0"},
		{V6Only: sockopt.V6OnlyOn},
		{V6Only: sockopt.V6OnlyOff},
		{ReuseAddr: true, ReusePort: true, Freebind: true, BindAddressNoPort: true, Device: "v0", V6Only: sockopt.V6OnlyOn},
	}
	const firstPort = 47100
	want := map[netip.AddrPort]sockopt.Options{} // per local endpoint (protocols apart by port)
	port := uint16(firstPort)
	var accepted netip.AddrPort
	err := ns.Do(func() error {
		for _, proto := range []inet.Proto{inet.TCP, inet.UDP} {
			for _, a := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
				for i, o := range cases {
					if a.Is4() && o.V6Only != sockopt.V6OnlyDefault {
						continue
					}
					if a.Is6() && o.Device == "v0" && !o.Freebind {
						continue // IPv6 bind() wants ::1 on v0 (the all-at-once case has IP_FREEBIND)
					}
					at := a
					if a.Is6() && o.V6Only != sockopt.V6OnlyDefault {
						at = netip.IPv6Unspecified() // bind() on ::1 sets IPV6_V6ONLY whatever was set
					}
					ap := netip.AddrPortFrom(at, port)
					port++
					if _, err := netnstest.Socket(t, proto, ap, o, proto == inet.TCP && i%2 == 0); err != nil {
						return err
					}
					want[ap] = o
				}
			}
		}
		// An accepted connection of a listener with options.
		accepted = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
		l, err := netnstest.Socket(t, inet.TCP, accepted, sockopt.Options{ReuseAddr: true, Freebind: true}, true)
		if err != nil {
			return err
		}
		c, err := net.Dial("tcp", accepted.String())
		if err != nil {
			return err
		}
		t.Cleanup(func() { c.Close() })
		fd, _, err := unix.Accept(l)
		if err != nil {
			return err
		}
		t.Cleanup(func() { unix.Close(fd) })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var (
		viaOwner, viaRecords, noOwners *socktab.Table
		index                          *Facts
	)
	err = ns.Do(func() error {
		tcp, err := sockfacts.Read(inet.TCP)
		if err != nil {
			return err
		}
		udp, err := sockfacts.Read(inet.UDP)
		if err != nil {
			return err
		}
		index = IndexFacts(append(tcp, udp...))
		if viaOwner, err = socktab.Snapshot(ctx, socktab.Query{Options: true}); err != nil {
			return err
		}
		if viaRecords, err = socktab.Snapshot(ctx, socktab.Query{Options: true, OptionsFrom: index.Options}); err != nil {
			return err
		}
		noOwners, err = socktab.Snapshot(ctx, socktab.Query{Options: true, OptionsFrom: index.Options, ProcRoot: t.TempDir()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	byCookie := func(tab *socktab.Table) map[uint64]socktab.Socket {
		m := map[uint64]socktab.Socket{}
		for _, s := range tab.Sockets {
			m[s.Cookie] = s
		}
		return m
	}
	records, bare := byCookie(viaRecords), byCookie(noOwners)
	seen, recorded, acceptedSeen := 0, 0, false
	for _, s := range viaOwner.Sockets {
		if s.Local.Port() < firstPort || s.Local.Port() > port {
			continue
		}
		got := s.Options
		if o, ok := want[s.Local]; ok {
			seen++
			// The owner's read is what was set (the test's own check).
			v6only := o.V6Only == sockopt.V6OnlyOn || (s.Family == inet.IPv6 && !s.Local.Addr().IsUnspecified())
			if !got.ReuseAddr.Known || got.ReuseAddr.Value != o.ReuseAddr || got.ReusePort.Value != o.ReusePort ||
				got.Freebind.Value != o.Freebind || got.BindAddressNoPort.Value != o.BindAddressNoPort ||
				got.Device.Value != o.Device || (s.Family == inet.IPv6 && got.V6Only.Value != v6only) {
				t.Errorf("%v %v set %+v, getsockopt reads %+v", s.Proto, s.Local, o, got)
			}
		}
		if s.Remote.Port() != 0 && s.Local == accepted {
			acceptedSeen = true
		}
		if diff := cmp.Diff(got, records[s.Cookie].Options); diff != "" {
			t.Errorf("%v %v %v: options from the records differ from getsockopt's (-getsockopt +records):\n%s", s.Proto, s.State, s.Local, diff)
		}
		// The iterator walks the hash tables of listening and connected
		// sockets: a bound-only TCP socket has no record, and keeps the
		// owner's read.
		if index.Lookup(&s) == nil {
			if s.Proto == inet.UDP || (s.State != socktab.BoundInactive && s.State != socktab.Close) {
				t.Errorf("%v %v %v: no record", s.Proto, s.State, s.Local)
			}
			continue
		}
		recorded++
		if diff := cmp.Diff(got, bare[s.Cookie].Options); diff != "" || len(bare[s.Cookie].Owners) != 0 {
			t.Errorf("%v %v %v without owners (%d): options from the records alone differ from getsockopt's (-getsockopt +records):\n%s",
				s.Proto, s.State, s.Local, len(bare[s.Cookie].Owners), diff)
		}
	}
	if seen != len(want) || !acceptedSeen || recorded < len(want)/2 {
		t.Errorf("saw %d of the %d sockets made (%d with a record), accepted connection seen: %v", seen, len(want), recorded, acceptedSeen)
	}
}
