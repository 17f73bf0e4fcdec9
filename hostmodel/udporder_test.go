package hostmodel

import (
	"net/netip"
	"slices"
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
	// Bound in the order a4 (inode 10), b6 (11), c4rp (12), d6rp (13),
	// e6rp (14), f4 (15): the chain is f4 c4rp b6 a4 | d6rp e6rp, and the
	// dumps list IPv4 (f4 c4rp a4), then IPv6 (b6 d6rp e6rp).
	entries := []Entry{
		tcp,
		udp("f4", inet.IPv4, false, 15), udp("c4rp", inet.IPv4, true, 12), udp("a4", inet.IPv4, false, 10),
		udp("b6", inet.IPv6, false, 11), udp("d6rp", inet.IPv6, true, 13), udp("e6rp", inet.IPv6, true, 14),
	}
	udpBindOrder(entries)
	var got []string
	for _, e := range entries {
		got = append(got, e.Socket.ID)
	}
	if want := []string{"tcp", "a4", "b6", "c4rp", "f4", "d6rp", "e6rp"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}
