package hostmodel

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/mdlayher/netlink"

	"github.com/tuple-net/tuple/inet"
)

// ruleMsg builds a rule message as the kernel fills one: fib_rule_hdr,
// then the source-port attributes asked for (a 0 leaves one out).
func ruleMsg(t testing.TB, lo, hi, mask uint16) []byte {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(6, 100) // FRA_PRIORITY, an attribute the parser skips
	if lo != 0 || hi != 0 {
		ae.Bytes(fraSportRange, binary.NativeEndian.AppendUint16(binary.NativeEndian.AppendUint16(nil, lo), hi))
	}
	if mask != 0 {
		ae.Bytes(fraSportMask, binary.NativeEndian.AppendUint16(nil, mask))
	}
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(make([]byte, fibRuleHdrLen), b...)
}

func TestParseRuleSport(t *testing.T) {
	for _, c := range []struct {
		lo, hi, mask uint16
		ok           bool
	}{
		{5000, 5001, 0, true},
		{5003, 5003, 0, true},
		{0, 0, 0, false},         // no source-port selector
		{0x10, 0x10, 0xf0, true}, // by mask
		{0, 0, 0xf000, true},     // by mask, value 0: the kernel sends no range
	} {
		sel, ok, err := parseRuleSport(ruleMsg(t, c.lo, c.hi, c.mask))
		if err != nil || ok != c.ok || (ok && sel != (sportSelector{c.lo, c.hi, c.mask})) {
			t.Errorf("rule sport %d-%d mask %#x: %+v, %v, %v", c.lo, c.hi, c.mask, sel, ok, err)
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, fibRuleHdrLen-1), append(make([]byte, fibRuleHdrLen), 8, 0, fraSportRange, 0, 1, 2, 3, 4, 5)} {
		if _, _, err := parseRuleSport(bad); err == nil {
			t.Errorf("%x: no error", bad)
		}
	}
}

// The kernel's matching (fib_rule_port_match): a range, a value under a
// mask, or nothing.
func TestSportSelectorMatches(t *testing.T) {
	for _, c := range []struct {
		sel  sportSelector
		port uint16
		want bool
	}{
		{sportSelector{5000, 5001, 0}, 5000, true},
		{sportSelector{5000, 5001, 0}, 5001, true},
		{sportSelector{5000, 5001, 0}, 5002, false},
		{sportSelector{5000, 5001, 0}, 4999, false},
		{sportSelector{1, 1, 1}, 32769, true}, // odd ports
		{sportSelector{1, 1, 1}, 32768, false},
		{sportSelector{0, 0, 0xf000}, 4095, true},
		{sportSelector{0, 0, 0xf000}, 4096, false},
		{sportSelector{}, 7, true},
	} {
		if got := c.sel.matches(c.port); got != c.want {
			t.Errorf("%+v matches %d: %v, want %v", c.sel, c.port, got, c.want)
		}
	}
}

func TestPortClasses(t *testing.T) {
	rng := inet.PortRange{Lo: 32768, Hi: 60999}
	for _, c := range []struct {
		name string
		sels []sportSelector
		want []uint16
	}{
		{"no rules", nil, []uint16{32768}},
		{"the range's start", []sportSelector{{32768, 40000, 0}}, []uint16{32768, 60999}},
		{"its middle", []sportSelector{{40000, 50000, 0}}, []uint16{32768, 50000}},
		{"its end", []sportSelector{{50000, 65000, 0}}, []uint16{32768, 60999}},
		{"outside it", []sportSelector{{5000, 5001, 0}}, []uint16{32768}},
		{"all of it", []sportSelector{{1, 65534, 0}}, []uint16{32768}},
		{"two", []sportSelector{{40000, 50000, 0}, {45000, 55000, 0}}, []uint16{32768, 44999, 50000, 55000}},
		{"odd ports", []sportSelector{{1, 1, 1}}, []uint16{32768, 60999}},
	} {
		if got := portClasses(rng, c.sels); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if got := portClasses(inet.PortRange{}, nil); got != nil {
		t.Errorf("an unread range: %v, want none", got)
	}
	// Masks can cut the range into more classes than are looked up.
	var many []sportSelector
	for bit := range 10 {
		many = append(many, sportSelector{1 << bit, 1 << bit, 1 << bit})
	}
	if got := portClasses(rng, many); len(got) != maxPortClasses || got[0] != rng.Lo {
		t.Errorf("ten bit masks: %d ports from %v, want %d from %d", len(got), got[:1], maxPortClasses, rng.Lo)
	}
}

func FuzzParseRuleSport(f *testing.F) {
	f.Add(ruleMsg(f, 5000, 5001, 0))
	f.Add(ruleMsg(f, 1, 1, 1))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		sel, ok, err := parseRuleSport(b)
		if err == nil && len(b) < fibRuleHdrLen {
			t.Fatalf("%d bytes read as a rule", len(b))
		}
		if ok && sel.mask == 0 && (sel.lo == 0 || sel.hi == 0) {
			t.Fatalf("%+v taken as a selector", sel)
		}
		if got := portClasses(inet.PortRange{Lo: 1000, Hi: 1100}, []sportSelector{sel}); len(got) == 0 || got[0] != 1000 || len(got) > 2 {
			t.Fatalf("one selector %+v: classes %v", sel, got)
		}
	})
}
