package hostmodel

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/mdlayher/netlink"

	"github.com/tuple-net/tuple/inet"
)

// Attributes of a policy routing rule (RTM_NEWRULE) that select by source
// port: the range (linux/fib_rules.h FRA_SPORT_RANGE, 4.17) and, since
// 6.15, a mask (FRA_SPORT_MASK), which golang.org/x/sys/unix does not name.
const (
	fraSportRange = 23
	fraSportMask  = 28
	fibRuleHdrLen = 12 // struct fib_rule_hdr
)

// sportSelector is one ip rule's source-port selector (`ip rule ... sport
// 5000-5001`, or `sport 0x10/0xf0` by mask), matched as the kernel's
// fib_rule_port_match does.
type sportSelector struct {
	lo, hi, mask uint16
}

func (s sportSelector) matches(port uint16) bool {
	if (s.lo^port)&s.mask != 0 {
		return false
	}
	return s.mask != 0 || s.lo == 0 || s.hi == 0 || (port >= s.lo && port <= s.hi)
}

// parseRuleSport reads a rule message (struct fib_rule_hdr, then
// attributes) and returns its source-port selector; ok is false for a rule
// that selects on no source port.
func parseRuleSport(b []byte) (sportSelector, bool, error) {
	var sel sportSelector
	if len(b) < fibRuleHdrLen {
		return sel, false, fmt.Errorf("rule message of %d bytes, shorter than fib_rule_hdr", len(b))
	}
	ad, err := netlink.NewAttributeDecoder(b[fibRuleHdrLen:])
	if err != nil {
		return sel, false, fmt.Errorf("rule message: %w", err)
	}
	for ad.Next() {
		v := ad.Bytes()
		switch ad.Type() {
		case fraSportRange:
			if len(v) != 4 {
				return sel, false, fmt.Errorf("rule message: a source port range of %d bytes", len(v))
			}
			// struct fib_rule_port_range: host-order start and end.
			sel.lo, sel.hi = binary.NativeEndian.Uint16(v), binary.NativeEndian.Uint16(v[2:])
		case fraSportMask:
			if len(v) != 2 {
				return sel, false, fmt.Errorf("rule message: a source port mask of %d bytes", len(v))
			}
			sel.mask = binary.NativeEndian.Uint16(v)
		}
	}
	if err := ad.Err(); err != nil {
		return sportSelector{}, false, fmt.Errorf("rule message: %w", err)
	}
	// As the kernel sends them: a range when both ends are set, a mask
	// when not 0 (its value is then the range's start, or 0).
	return sel, sel.mask != 0 || (sel.lo != 0 && sel.hi != 0), nil
}

// maxSportSelectors bounds the rules portClasses tells ports apart by, and
// maxPortClasses the ports it returns (a route lookup each): masks can cut
// a range into many classes, a handful of rules into a few.
const (
	maxSportSelectors = 64
	maxPortClasses    = 64
)

// portClasses splits the ports of rng by the selectors that match them:
// two ports every selector takes (or leaves) alike are looked up alike, as
// no other part of a rule depends on the source port. It returns one port
// per class, rng.Lo first and then each other class's highest port, in the
// order of those ports, at most maxPortClasses. Without selectors there is
// one class; selectors beyond maxSportSelectors are not told apart.
func portClasses(rng inet.PortRange, sels []sportSelector) []uint16 {
	if rng.Lo == 0 || rng.Hi < rng.Lo {
		return nil
	}
	sels = sels[:min(len(sels), maxSportSelectors)]
	signature := func(p uint16) uint64 {
		var sig uint64
		for i, s := range sels {
			if s.matches(p) {
				sig |= 1 << i
			}
		}
		return sig
	}
	first := signature(rng.Lo)
	highest := map[uint64]uint16{}
	for p := uint32(rng.Lo); p <= uint32(rng.Hi); p++ {
		if sig := signature(uint16(p)); sig != first {
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
