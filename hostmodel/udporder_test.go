package hostmodel

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
)

// A table lists a port's UDP sockets as the kernel's chain holds them, one
// family after the other: newest first at the head, IPv6 SO_REUSEPORT
// sockets oldest first at the tail. udpBindOrder gives the model bind
// order back (oldest first), IPv4 and IPv6 head sockets merged by inode,
// TCP entries left in their places.
func TestUDPBindOrder(t *testing.T) {
	udp := func(id string, fam inet.Family, reuseport bool, inode uint64) Entry {
		return Entry{Inode: inode, Socket: rules.Socket{ID: id, Proto: inet.UDP, Family: fam, ReusePort: reuseport,
			Local: netip.MustParseAddrPort("127.0.0.1:53")}}
	}
	tcp := Entry{Inode: 1, Socket: rules.Socket{ID: "tcp", Proto: inet.TCP, Family: inet.IPv4}}
	other := Entry{Inode: 2, Socket: rules.Socket{ID: "other", Proto: inet.UDP, Family: inet.IPv4, Local: netip.MustParseAddrPort("127.0.0.1:5353")}}
	// Bound in the order a4 (inode 10), b6 (11), c4rp (12), d6rp (13),
	// e6rp (14), f4 (15): the chain is f4 c4rp b6 a4 | d6rp e6rp, and the
	// dumps list IPv4 (f4 c4rp a4), then IPv6 (b6 d6rp e6rp). A socket
	// of another port, created first, bound last, between them in the
	// IPv4 dump, stays out of the port's order.
	entries := []Entry{
		tcp,
		udp("f4", inet.IPv4, false, 15), other, udp("c4rp", inet.IPv4, true, 12), udp("a4", inet.IPv4, false, 10),
		udp("b6", inet.IPv6, false, 11), udp("d6rp", inet.IPv6, true, 13), udp("e6rp", inet.IPv6, true, 14),
	}
	udpBindOrder(entries)
	var got []string
	for _, e := range entries {
		got = append(got, e.Socket.ID)
	}
	if want := []string{"tcp", "a4", "other", "b6", "c4rp", "f4", "d6rp", "e6rp"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

// Where the verdict of a UDP bind rests on which of the port's IPv4 and
// IPv6 sockets bound last, which no socket table shows, the verdict says
// so with both answers; where either order gives the same verdict it says
// nothing. The world is one the kernel answered: an IPv6 SO_REUSEADDR
// socket, then an IPv6 SO_REUSEPORT one, then an IPv4 one with both; a
// dual-stack SO_REUSEPORT bind joins the IPv4 socket if it bound last and
// fails on the IPv6 SO_REUSEADDR one otherwise.
func TestUDPOrderAssumption(t *testing.T) {
	ap := netip.MustParseAddrPort
	a := rules.Socket{ID: "A", Proto: inet.UDP, Family: inet.IPv6, Local: ap("[fd00::1]:20891"), State: rules.Bound, ReuseAddr: true}
	b := rules.Socket{ID: "B", Proto: inet.UDP, Family: inet.IPv6, Local: ap("[::ffff:10.0.0.1]:20891"), State: rules.Bound, ReusePort: true}
	c := rules.Socket{ID: "C", Proto: inet.UDP, Family: inet.IPv4, Local: ap("0.0.0.0:20891"), State: rules.Bound, ReuseAddr: true, ReusePort: true}
	plan := Plan{Socket: rules.Socket{Proto: inet.UDP, Family: inet.IPv6, ReusePort: true},
		Ops: []rules.Op{{Kind: rules.OpBind, Addr: ap("[::]:20891")}}}
	for _, tc := range []struct {
		name    string
		sockets []rules.Socket
		want    string // the assumption's verdicts, "" for none
	}{
		{"both families at the chain's head", []rules.Socket{a, b, c}, "ok if the IPv4 sockets on it bound last, EADDRINUSE if the IPv6 ones did"},
		{"only IPv4 at the head", []rules.Socket{b, c}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sit := &Situation{Host: rules.DefaultHost()}
			for _, s := range tc.sockets {
				sit.Entries = append(sit.Entries, Entry{Socket: s})
			}
			res := sit.predict(nil, plan)
			var got []string
			for _, as := range res.Assumptions {
				if strings.HasPrefix(as, UDPOrderUnknown) {
					got = append(got, as)
				}
			}
			switch {
			case tc.want == "" && len(got) > 0:
				t.Errorf("verdict %s with assumptions %q, want none about the order", res.ErrName(), got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Errorf("verdict %s with assumptions %q, want one saying %q", res.ErrName(), res.Assumptions, tc.want)
			}
		})
	}
}

// TestFixesDoNotCountOnUDPOrder: a change that works in only one of the
// two orders a socket table cannot tell apart is not a fix.
func TestFixesDoNotCountOnUDPOrder(t *testing.T) {
	ap := netip.MustParseAddrPort
	w := []rules.Socket{
		{ID: "A", Proto: inet.UDP, Family: inet.IPv6, Local: ap("[fd00::1]:20891"), State: rules.Bound, ReuseAddr: true},
		{ID: "B", Proto: inet.UDP, Family: inet.IPv6, Local: ap("[::ffff:10.0.0.1]:20891"), State: rules.Bound, ReusePort: true},
		{ID: "C", Proto: inet.UDP, Family: inet.IPv4, Local: ap("0.0.0.0:20891"), State: rules.Bound, ReuseAddr: true, ReusePort: true},
	}
	sit := &Situation{Host: rules.DefaultHost()}
	for _, s := range w {
		sit.Entries = append(sit.Entries, Entry{Socket: s})
	}
	bind := func(ra, rp bool) Plan {
		return Plan{Socket: rules.Socket{Proto: inet.UDP, Family: inet.IPv6, ReuseAddr: ra, ReusePort: rp},
			Ops: []rules.Op{{Kind: rules.OpBind, Addr: ap("[::]:20891")}}}
	}
	world := sit.World()
	for _, c := range []struct {
		what   string
		ra, rp bool
		want   bool
	}{
		{"SO_REUSEPORT: ok only if the IPv4 socket bound last", false, true, false},
		{"both options: ok in either order", true, true, true},
		{"no option: refused in either order", false, false, false},
	} {
		if got := succeeds(sit, nil, bind(c.ra, c.rp)); got != c.want {
			t.Errorf("%s: succeeds %v, want %v", c.what, got, c.want)
		}
		if got := succeeds(sit, &world, bind(c.ra, c.rp)); got != c.want {
			t.Errorf("%s, in a changed world: succeeds %v, want %v", c.what, got, c.want)
		}
	}
}
