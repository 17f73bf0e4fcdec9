package hostmodel

import (
	"slices"

	"github.com/tuple-net/tuple/inet"
)

// udpBindOrder puts the UDP entries of a table read from the kernel in the
// order the model takes them in: oldest bind first (rules.World).
//
// The kernel keeps a port's UDP sockets on one hash chain, each added at
// its head when it binds, except IPv6 SO_REUSEPORT sockets, added at its
// tail (sk_add_node_rcu); bind() walks that chain and the first
// overlapping socket decides (udp_lib_lport_inuse). A dump (inet_diag or
// /proc/net/udp) walks the chain too, one family per dump: within a
// family its order is the chain's, newest first at the head, oldest first
// at the tail. So the head's sockets are reversed and the tail's kept,
// which gives the chain back when the model rebuilds it. Which of an IPv4
// and an IPv6 socket at the head bound first no dump tells: they are
// merged by inode number, which grows as sockets are created, the nearest
// the table has to their bind order.
//
// The entries are reordered in place; other entries keep their places,
// the UDP ones filling the places UDP entries held.
func udpBindOrder(entries []Entry) {
	var places []int
	var v4, v6Head, v6Tail []Entry
	for i := range entries {
		s := &entries[i].Socket
		if s.Proto != inet.UDP {
			continue
		}
		places = append(places, i)
		switch {
		case s.Family == inet.IPv6 && s.ReusePort:
			v6Tail = append(v6Tail, entries[i])
		case s.Family == inet.IPv6:
			v6Head = append(v6Head, entries[i])
		default:
			v4 = append(v4, entries[i])
		}
	}
	if len(places) < 2 {
		return
	}
	slices.Reverse(v4)
	slices.Reverse(v6Head)
	ordered := make([]Entry, 0, len(places))
	for len(v4) > 0 || len(v6Head) > 0 {
		if len(v6Head) == 0 || len(v4) > 0 && v4[0].Inode <= v6Head[0].Inode {
			ordered, v4 = append(ordered, v4[0]), v4[1:]
		} else {
			ordered, v6Head = append(ordered, v6Head[0]), v6Head[1:]
		}
	}
	ordered = append(ordered, v6Tail...)
	for k, i := range places {
		entries[i] = ordered[k]
	}
}
