package hostmodel

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/mdlayher/netlink"

	"github.com/tuple-net/tuple/inet"
)

// ruleMsg builds a rule message as the kernel fills one: fib_rule_hdr,
// then the attributes of r's set selectors and protocol.
func ruleMsg(t testing.TB, r portRule) []byte {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(6, 100) // FRA_PRIORITY, an attribute the parser skips
	if r.proto != 0 {
		ae.Uint8(fraIPProto, r.proto)
	}
	for _, s := range []struct {
		sel          portSelector
		rng, maskTyp uint16
	}{{r.sport, fraSportRange, fraSportMask}, {r.dport, fraDportRange, fraDportMask}} {
		if s.sel.lo != 0 || s.sel.hi != 0 {
			ae.Bytes(s.rng, binary.NativeEndian.AppendUint16(binary.NativeEndian.AppendUint16(nil, s.sel.lo), s.sel.hi))
		}
		if s.sel.mask != 0 {
			ae.Bytes(s.maskTyp, binary.NativeEndian.AppendUint16(nil, s.sel.mask))
		}
	}
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(make([]byte, fibRuleHdrLen), b...)
}

func TestParseRulePorts(t *testing.T) {
	for _, r := range []portRule{
		{sport: portSelector{5000, 5001, 0}},
		{sport: portSelector{5003, 5003, 0}, proto: 6},
		{},
		{sport: portSelector{0x10, 0x10, 0xf0}}, // by mask
		{sport: portSelector{0, 0, 0xf000}},     // by mask, value 0: the kernel sends no range
		{sport: portSelector{40000, 50000, 0}, dport: portSelector{8448, 8448, 0}, proto: 6},
		{dport: portSelector{1, 1, 1}, proto: 17},
	} {
		got, err := parseRulePorts(ruleMsg(t, r))
		if err != nil || got != r {
			t.Errorf("rule %+v: read as %+v, %v", r, got, err)
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, fibRuleHdrLen-1), append(make([]byte, fibRuleHdrLen), 8, 0, fraSportRange, 0, 1, 2, 3, 4, 5)} {
		if _, err := parseRulePorts(bad); err == nil {
			t.Errorf("%x: no error", bad)
		}
	}
}

// A rule tells source ports apart for a lookup only when its protocol and
// destination port can match it.
func TestPortRuleConcerns(t *testing.T) {
	r := portRule{sport: portSelector{40000, 50000, 0}, dport: portSelector{8448, 8448, 0}, proto: 6}
	if !r.concerns(6, 8448) || r.concerns(6, 8449) || r.concerns(17, 8448) {
		t.Errorf("%+v: concerns TCP to 8448 %v, TCP to 8449 %v, UDP to 8448 %v; want true, false, false", r, r.concerns(6, 8448), r.concerns(6, 8449), r.concerns(17, 8448))
	}
	if any := (portRule{sport: portSelector{1, 1, 1}}); !any.concerns(17, 53) {
		t.Errorf("%+v: a rule without protocol or destination port must concern every lookup", any)
	}
}

// The kernel's matching (fib_rule_port_match): a range, a value under a
// mask, or nothing.
func TestSportSelectorMatches(t *testing.T) {
	for _, c := range []struct {
		sel  portSelector
		port uint16
		want bool
	}{
		{portSelector{5000, 5001, 0}, 5000, true},
		{portSelector{5000, 5001, 0}, 5001, true},
		{portSelector{5000, 5001, 0}, 5002, false},
		{portSelector{5000, 5001, 0}, 4999, false},
		{portSelector{1, 1, 1}, 32769, true}, // odd ports
		{portSelector{1, 1, 1}, 32768, false},
		{portSelector{0, 0, 0xf000}, 4095, true},
		{portSelector{0, 0, 0xf000}, 4096, false},
		{portSelector{}, 7, true},
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
		sels []portSelector
		want []uint16
	}{
		{"no rules", nil, []uint16{32768}},
		{"the range's start", []portSelector{{32768, 40000, 0}}, []uint16{32768, 60999}},
		{"its middle", []portSelector{{40000, 50000, 0}}, []uint16{32768, 50000}},
		{"its end", []portSelector{{50000, 65000, 0}}, []uint16{32768, 60999}},
		{"outside it", []portSelector{{5000, 5001, 0}}, []uint16{32768}},
		{"all of it", []portSelector{{1, 65534, 0}}, []uint16{32768}},
		{"two", []portSelector{{40000, 50000, 0}, {45000, 55000, 0}}, []uint16{32768, 44999, 50000, 55000}},
		{"odd ports", []portSelector{{1, 1, 1}}, []uint16{32768, 60999}},
	} {
		if got := portClasses(rng, c.sels); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if got := portClasses(inet.PortRange{}, nil); got != nil {
		t.Errorf("an unread range: %v, want none", got)
	}
	// Masks can cut the range into more classes than are looked up.
	var many []portSelector
	for bit := range 10 {
		many = append(many, portSelector{1 << bit, 1 << bit, 1 << bit})
	}
	if got := portClasses(rng, many); len(got) != maxPortClasses || got[0] != rng.Lo {
		t.Errorf("ten bit masks: %d ports from %v, want %d from %d", len(got), got[:1], maxPortClasses, rng.Lo)
	}
}

func TestClassBoundaries(t *testing.T) {
	mid := []portSelector{{40000, 50000, 0}}
	for _, c := range []struct {
		port uint16
		sels []portSelector
		n    int
		want []uint16
	}{
		{45000, mid, 8, []uint16{39999, 50001}},
		{45001, mid, 8, []uint16{50001, 39999}},
		{40000, mid, 8, []uint16{39999, 50001}},
		{100, mid, 8, []uint16{40000, 50001}},
		{45000, nil, 8, nil},
		{5, []portSelector{{1, 1, 1}}, 2, []uint16{4, 6, 3, 7}}, // odd ports
		{65535, []portSelector{{1, 65534, 0}}, 8, []uint16{65534}},
		// Nested rules: every boundary, outward.
		{45000, []portSelector{{40000, 50000, 0}, {44000, 46000, 0}}, 8, []uint16{43999, 46001, 39999, 50001}},
	} {
		if got := classBoundaries(c.port, c.sels, c.n); !slices.Equal(got, c.want) {
			t.Errorf("port %d, %v: %v, want %v", c.port, c.sels, got, c.want)
		}
	}
}

func FuzzParseRulePorts(f *testing.F) {
	f.Add(ruleMsg(f, portRule{sport: portSelector{5000, 5001, 0}}))
	f.Add(ruleMsg(f, portRule{sport: portSelector{1, 1, 1}, dport: portSelector{80, 80, 0}, proto: 6}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRulePorts(b)
		if err == nil && len(b) < fibRuleHdrLen {
			t.Fatalf("%d bytes read as a rule", len(b))
		}
		if err != nil && r != (portRule{}) {
			t.Fatalf("an error with a rule read: %+v", r)
		}
		if got := portClasses(inet.PortRange{Lo: 1000, Hi: 1100}, []portSelector{r.sport}); len(got) == 0 || got[0] != 1000 || len(got) > 2 {
			t.Fatalf("one selector %+v: classes %v", r.sport, got)
		}
		for _, q := range classBoundaries(1050, []portSelector{r.sport}, 4) {
			if r.sport.matches(q) == r.sport.matches(q-1) && r.sport.matches(q) == r.sport.matches(q+1) {
				t.Fatalf("%+v: boundary %d is no boundary", r.sport, q)
			}
		}
	})
}
