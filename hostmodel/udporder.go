package hostmodel

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
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
// merged by inode number, the nearest the table has to their bind order
// (inodes grow as sockets are created, though in per-CPU batches), and
// where that order decides a verdict the verdict says so
// (udpOrderAssumption).
//
// The entries are reordered in place, port by port (the model looks at
// one port's sockets at a time): other entries keep their places, each
// port's UDP entries filling the places its UDP entries held.
func udpBindOrder(entries []Entry) {
	type chain struct {
		places             []int
		v4, v6Head, v6Tail []Entry
	}
	ports := map[uint16]*chain{}
	for i := range entries {
		s := &entries[i].Socket
		if s.Proto != inet.UDP {
			continue
		}
		c := ports[s.Local.Port()]
		if c == nil {
			c = &chain{}
			ports[s.Local.Port()] = c
		}
		c.places = append(c.places, i)
		switch {
		case s.Family == inet.IPv6 && s.ReusePort:
			c.v6Tail = append(c.v6Tail, entries[i])
		case s.Family == inet.IPv6:
			c.v6Head = append(c.v6Head, entries[i])
		default:
			c.v4 = append(c.v4, entries[i])
		}
	}
	for _, c := range ports {
		if len(c.places) < 2 {
			continue
		}
		slices.Reverse(c.v4)
		slices.Reverse(c.v6Head)
		v4, v6 := c.v4, c.v6Head
		ordered := make([]Entry, 0, len(c.places))
		for len(v4) > 0 || len(v6) > 0 {
			if len(v6) == 0 || len(v4) > 0 && v4[0].Inode <= v6[0].Inode {
				ordered, v4 = append(ordered, v4[0]), v4[1:]
			} else {
				ordered, v6 = append(ordered, v6[0]), v6[1:]
			}
		}
		ordered = append(ordered, c.v6Tail...)
		for k, i := range c.places {
			entries[i] = ordered[k]
		}
	}
}

// atUDPChainHead reports whether s is a UDP socket holding a port that
// the kernel added at the head of the port's chain: every one but IPv6
// SO_REUSEPORT sockets, added at the tail.
func atUDPChainHead(s *rules.Socket) bool {
	return s.Proto == inet.UDP && s.State != rules.Unbound && !(s.Family == inet.IPv6 && s.ReusePort)
}

// udpMixedPorts are the ports of entries whose UDP sockets at the head of
// the kernel's chain (IPv4 ones, IPv6 ones without SO_REUSEPORT) are of
// both families; an empty map, not nil, when there is none.
func udpMixedPorts(entries []Entry) map[uint16]bool {
	fams := map[uint16]uint8{} // port -> 1: IPv4 seen, 2: IPv6 seen
	for i := range entries {
		s := &entries[i].Socket
		if !atUDPChainHead(s) {
			continue
		}
		if s.Family == inet.IPv6 {
			fams[s.Local.Port()] |= 2
		} else {
			fams[s.Local.Port()] |= 1
		}
	}
	mixed := map[uint16]bool{}
	for port, f := range fams {
		if f == 3 {
			mixed[port] = true
		}
	}
	return mixed
}

// udpFamilyOrders returns w twice, its UDP sockets on port at the head of
// the kernel's chain (IPv4 ones, IPv6 ones without SO_REUSEPORT) put in
// the two orders the socket table cannot tell apart: every IPv4 one bound
// after every IPv6 one (v4Last), or before (v6Last), each family's own
// order kept. ok is false when the port has no such sockets of both
// families, where the table's order is the kernel's.
func udpFamilyOrders(w rules.World, port uint16) (v4Last, v6Last rules.World, ok bool) {
	var places, v4, v6 []int
	for i := range w.Sockets {
		s := &w.Sockets[i]
		if !atUDPChainHead(s) || s.Local.Port() != port {
			continue
		}
		places = append(places, i)
		if s.Family == inet.IPv6 {
			v6 = append(v6, i)
		} else {
			v4 = append(v4, i)
		}
	}
	if len(v4) == 0 || len(v6) == 0 {
		return w, w, false
	}
	reorder := func(first, last []int) rules.World {
		out := w
		out.Sockets = slices.Clone(w.Sockets)
		for k, i := range append(slices.Clone(first), last...) {
			out.Sockets[places[k]] = w.Sockets[i]
		}
		return out
	}
	return reorder(v6, v4), reorder(v4, v6), true
}

// UDPFamilyOrders returns the situation's world in the two orders of UDP
// port's IPv4 and IPv6 sockets that no socket table tells apart (every
// IPv4 one bound last, or every IPv6 one); ok is false where the table's
// order is the kernel's.
func (sit *Situation) UDPFamilyOrders(port uint16) (v4Last, v6Last rules.World, ok bool) {
	return udpFamilyOrders(sit.World(), port)
}

// udpOrderAssumption is the assumption a plan's verdict rests on when it
// binds a UDP port whose verdict the table's unknown order between IPv4
// and IPv6 sockets decides (udpFamilyOrders): res is given the two
// verdicts and which one it took. Nothing changes where both orders agree.
// w is the world the plan ran against, nil for the situation's own, whose
// two orders' models are indexed once per port (sit.udpOrders): a search
// for fixes asks many times.
func (sit *Situation) udpOrderAssumption(w *rules.World, p Plan, res *Result) {
	if p.Socket.Proto != inet.UDP {
		return
	}
	for _, op := range p.Ops {
		port := op.Addr.Port()
		if op.Kind != rules.OpBind || port == 0 || !sit.udpMixedPorts[port] {
			continue
		}
		models, ok := sit.udpOrders[port]
		if w != nil {
			v4Last, v6Last, mixed := udpFamilyOrders(*w, port)
			if !mixed {
				continue
			}
			models = [2]*rules.Model{rules.NewModel(v4Last), rules.NewModel(v6Last)}
		} else if !ok {
			v4Last, v6Last, _ := udpFamilyOrders(sit.World(), port)
			models = [2]*rules.Model{rules.NewModel(v4Last), rules.NewModel(v6Last)}
			if sit.udpOrders == nil {
				sit.udpOrders = map[uint16][2]*rules.Model{}
			}
			sit.udpOrders[port] = models
		}
		a, b := run(models[0].Predict, sit.Host, p), run(models[1].Predict, sit.Host, p)
		if a.ErrName() == b.ErrName() {
			continue
		}
		res.Assumptions = append(res.Assumptions, fmt.Sprintf("%s %d: %s if the IPv4 sockets on it bound last, %s if the IPv6 ones did; "+
			"the socket table lists each family apart, so which did is not known, and the socket created first is taken to have bound first (%s)",
			UDPOrderUnknown, port, a.ErrName(), b.ErrName(), res.ErrName()))
	}
}

// RestsOnUDPOrder reports whether the verdict would be another had the
// UDP port's IPv4 and IPv6 sockets bound in the other order: a fix or a
// sharing verdict must not count on it.
func (r Result) RestsOnUDPOrder() bool {
	return slices.ContainsFunc(r.Assumptions, func(a string) bool { return strings.HasPrefix(a, UDPOrderUnknown) })
}

// UDPOrderUnknown begins the assumption of a verdict that rests on which
// of a UDP port's IPv4 and IPv6 sockets bound last: bind() stops at the
// first overlapping socket on the kernel's chain for the port, whose order
// across the two families no socket table shows.
const UDPOrderUnknown = "bind() stops at the first overlapping socket of UDP port"
