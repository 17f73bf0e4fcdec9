package hostmodel

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/mdlayher/netlink"

	"github.com/tuple-net/tuple/inet"
)

// Attributes of a policy routing rule (RTM_NEWRULE) that select by
// protocol and port: ranges (linux/fib_rules.h FRA_SPORT_RANGE and
// FRA_DPORT_RANGE, 4.17) and, since 6.15, masks (FRA_SPORT_MASK,
// FRA_DPORT_MASK), which golang.org/x/sys/unix does not name.
const (
	fraIPProto     = 22
	fraSportRange  = 23
	fraDportRange  = 24
	fraSportMask   = 28
	fraDportMask   = 29
	fibRuleHdrLen  = 12 // struct fib_rule_hdr
	portRangeBytes = 4  // struct fib_rule_port_range
)

// portSelector is one ip rule's selector of a port (`ip rule ... sport
// 5000-5001`, or by mask, `sport 0x10/0xf0`), matched as the kernel's
// fib_rule_port_match does: the zero selector takes every port.
type portSelector struct {
	lo, hi, mask uint16
}

func (s portSelector) matches(port uint16) bool {
	if (s.lo^port)&s.mask != 0 {
		return false
	}
	return s.mask != 0 || s.lo == 0 || s.hi == 0 || (port >= s.lo && port <= s.hi)
}

// set reports whether s selects at all, as the kernel sends a selector:
// a range when both ends are set, a mask when not 0 (its value is then the
// range's start, or 0).
func (s portSelector) set() bool { return s.mask != 0 || (s.lo != 0 && s.hi != 0) }

// portRule is what of a policy routing rule concerns ports: its source
// and destination port selectors and its protocol (0: any).
type portRule struct {
	sport, dport portSelector
	proto        uint8
}

// concerns reports whether the rule can match a lookup for protocol proto
// to port dport: only then do its source ports tell lookups apart.
func (r portRule) concerns(proto uint8, dport uint16) bool {
	return (r.proto == 0 || r.proto == proto) && r.dport.matches(dport)
}

// parseRulePorts reads a rule message (struct fib_rule_hdr, then
// attributes) for what concerns ports.
func parseRulePorts(b []byte) (portRule, error) {
	var r portRule
	if len(b) < fibRuleHdrLen {
		return r, fmt.Errorf("rule message of %d bytes, shorter than fib_rule_hdr", len(b))
	}
	ad, err := netlink.NewAttributeDecoder(b[fibRuleHdrLen:])
	if err != nil {
		return r, fmt.Errorf("rule message: %w", err)
	}
	for ad.Next() {
		v := ad.Bytes()
		switch typ := ad.Type(); typ {
		case fraIPProto:
			if len(v) != 1 {
				return portRule{}, fmt.Errorf("rule message: a protocol of %d bytes", len(v))
			}
			r.proto = v[0]
		case fraSportRange, fraDportRange:
			if len(v) != portRangeBytes {
				return portRule{}, fmt.Errorf("rule message: a port range of %d bytes", len(v))
			}
			sel := &r.sport
			if typ == fraDportRange {
				sel = &r.dport
			}
			// Host-order start and end.
			sel.lo, sel.hi = binary.NativeEndian.Uint16(v), binary.NativeEndian.Uint16(v[2:])
		case fraSportMask, fraDportMask:
			if len(v) != 2 {
				return portRule{}, fmt.Errorf("rule message: a port mask of %d bytes", len(v))
			}
			if typ == fraSportMask {
				r.sport.mask = binary.NativeEndian.Uint16(v)
			} else {
				r.dport.mask = binary.NativeEndian.Uint16(v)
			}
		}
	}
	if err := ad.Err(); err != nil {
		return portRule{}, fmt.Errorf("rule message: %w", err)
	}
	return r, nil
}

// maxSportSelectors bounds the rules portClasses tells ports apart by, and
// maxPortClasses the ports it returns (a route lookup each): masks can cut
// a range into many classes, a handful of rules into a few.
const (
	maxSportSelectors = 64
	maxPortClasses    = 64
)

// signature is the set of selectors (the first maxSportSelectors) that
// take port: ports of one signature are routed alike.
func signature(sels []portSelector, port uint16) uint64 {
	var sig uint64
	for i, s := range sels[:min(len(sels), maxSportSelectors)] {
		if s.matches(port) {
			sig |= 1 << i
		}
	}
	return sig
}

// portClasses splits the ports of rng by the selectors that match them:
// two ports every selector takes (or leaves) alike are looked up alike, as
// no other part of a rule depends on the source port. It returns one port
// per class, rng.Lo first and then each other class's highest port, in the
// order of those ports, at most maxPortClasses. Without selectors there is
// one class; selectors beyond maxSportSelectors are not told apart.
func portClasses(rng inet.PortRange, sels []portSelector) []uint16 {
	if rng.Lo == 0 || rng.Hi < rng.Lo {
		return nil
	}
	first := signature(sels, rng.Lo)
	highest := map[uint64]uint16{}
	for p := uint32(rng.Lo); p <= uint32(rng.Hi); p++ {
		if sig := signature(sels, uint16(p)); sig != first {
			highest[sig] = uint16(p)
		}
	}
	ports := []uint16{rng.Lo}
	for _, p := range highest {
		ports = append(ports, p)
	}
	slices.Sort(ports[1:])
	return ports[:min(len(ports), maxPortClasses)]
}

// classBoundaries walks away from port, down and up, and returns the
// first port of each class (of portClasses' kind) it enters, at most n on
// each side, nearer ones first (below first at equal distance). Every port
// between two boundaries is routed as the nearer one is, so a route that
// fails from port is first worth trying again from these.
func classBoundaries(port uint16, sels []portSelector, n int) []uint16 {
	if len(sels) == 0 {
		return nil
	}
	walk := func(step int) []int {
		var out []int
		prev := signature(sels, port)
		for q := int(port) + step; q >= 1 && q <= 65535 && len(out) < n; q += step {
			if sig := signature(sels, uint16(q)); sig != prev {
				out = append(out, q)
				prev = sig
			}
		}
		return out
	}
	below, above := walk(-1), walk(1)
	var out []uint16
	for len(below) > 0 || len(above) > 0 {
		if len(above) == 0 || (len(below) > 0 && int(port)-below[0] <= above[0]-int(port)) {
			out, below = append(out, uint16(below[0])), below[1:]
		} else {
			out, above = append(out, uint16(above[0])), above[1:]
		}
	}
	return out
}
