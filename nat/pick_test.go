package nat

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/inet"
)

func TestPredictPicks(t *testing.T) {
	snat := Rule{ToMin: netip.MustParseAddr("198.51.100.1"), Ports: inet.PortRange{Lo: 40000, Hi: 40002}, OutInterface: "out"}
	masq := Rule{Masquerade: true, OutInterface: "out"}
	ifaces := map[string][]netip.Addr{"out": {netip.MustParseAddr("203.0.113.1")}}
	dest := "198.51.100.2:80"
	tuple := func(src string) Tuple { return Tuple{Src: ap(src), Dst: ap(dest)} }
	for _, tc := range []struct {
		name  string
		rule  Rule
		flows []Flow
		src   string
		want  string // Pick.String()
		seen  string // an outside address the pick must accept
		not   string // one it must refuse
	}{
		{name: "masquerade keeps a free port", rule: masq, src: "192.0.2.2:12345",
			want: "203.0.113.1:12345 (kept)", seen: "203.0.113.1:12345", not: "203.0.113.1:12346"},
		{name: "masquerade rewrites a held port", rule: masq, src: "192.0.2.3:12345",
			flows: []Flow{flow("192.0.2.2:12345", dest, "203.0.113.1:12345")},
			want:  "203.0.113.1:1024-65535 (64511 free)", seen: "203.0.113.1:30000", not: "203.0.113.1:12345"},
		{name: "another destination does not hold the port", rule: masq, src: "192.0.2.3:12345",
			flows: []Flow{flow("192.0.2.2:12345", "198.51.100.3:80", "203.0.113.1:12345")},
			want:  "203.0.113.1:12345 (kept)"},
		{name: "low ports stay low", rule: masq, src: "192.0.2.3:700",
			flows: []Flow{flow("192.0.2.2:700", dest, "203.0.113.1:700")},
			want:  "203.0.113.1:600-1023 (423 free)", not: "203.0.113.1:2000"},
		{name: "a port outside the range is searched", rule: snat, src: "192.0.2.2:50000",
			want: "198.51.100.1:40000-40002 (3 free)", seen: "198.51.100.1:40001", not: "198.51.100.1:50000"},
		{name: "an in-range port is kept", rule: snat, src: "192.0.2.2:40001",
			want: "198.51.100.1:40001 (kept)"},
		{name: "fully-random searches an in-range port too", rule: Rule{ToMin: snat.ToMin, Ports: snat.Ports, FullyRandom: true}, src: "192.0.2.2:40001",
			want: "198.51.100.1:40000-40002 (3 free)", seen: "198.51.100.1:40001"},
		{name: "an existing mapping of the same source is reused", rule: snat, src: "192.0.2.2:50000",
			flows: []Flow{flow("192.0.2.2:50000", "198.51.100.3:80", "198.51.100.1:40002")},
			want:  "198.51.100.1:40002 (kept)"},
		{name: "the range is exhausted towards one destination", rule: snat, src: "192.0.2.2:50000",
			flows: []Flow{
				flow("192.0.2.3:1", dest, "198.51.100.1:40000"),
				flow("192.0.2.3:2", dest, "198.51.100.1:40001"),
				flow("192.0.2.3:3", dest, "198.51.100.1:40002"),
			},
			want: "drop (no free port)", not: "198.51.100.1:40000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := Predict([]Rule{tc.rule}, tc.flows, ifaces, "out", 6, tuple(tc.src))
			if !ok {
				t.Fatal("no rule matched")
			}
			if got := p.String(); got != tc.want {
				t.Errorf("pick = %s, want %s (%s)", got, tc.want, p.Why)
			}
			if tc.seen != "" && !p.Matches(ap(tc.seen)) {
				t.Errorf("pick %s refuses %s", p, tc.seen)
			}
			if tc.not != "" && p.Matches(ap(tc.not)) {
				t.Errorf("pick %s accepts %s", p, tc.not)
			}
		})
	}
}

// A new connection with the four-tuple of an entry in TIME_WAIT replaces
// it: the port that entry held is the connection's again. An entry of the
// same four-tuple in another state, or another source's TIME_WAIT entry,
// still holds it.
func TestPredictReplacesTimeWait(t *testing.T) {
	rule := Rule{Masquerade: true}
	ifaces := map[string][]netip.Addr{"out": {netip.MustParseAddr("203.0.113.1")}}
	orig := Tuple{Src: ap("192.0.2.2:40000"), Dst: ap("198.51.100.2:80")}
	for _, tc := range []struct {
		state uint8
		src   string
		want  string
	}{
		{7, "192.0.2.2:40000", "203.0.113.1:40000 (kept)"},            // TIME_WAIT, same four-tuple
		{8, "192.0.2.2:40000", "203.0.113.1:40000 (kept)"},            // CLOSE
		{3, "192.0.2.2:40000", "203.0.113.1:1024-65535 (64511 free)"}, // ESTABLISHED holds it
		{7, "192.0.2.3:40000", "203.0.113.1:1024-65535 (64511 free)"}, // another source's TIME_WAIT
	} {
		f := flow(tc.src, "198.51.100.2:80", "203.0.113.1:40000")
		f.TCPState = tc.state
		p, _ := Predict([]Rule{rule}, []Flow{f}, ifaces, "out", 6, orig)
		if p.String() != tc.want {
			t.Errorf("entry %s from %s: pick %s, want %s (%s)", f.State(), tc.src, p, tc.want, p.Why)
		}
	}
}

func TestPredictDropMatchesNoArrival(t *testing.T) {
	r := Rule{ToMin: netip.MustParseAddr("198.51.100.1"), Ports: inet.PortRange{Lo: 40000, Hi: 40000}}
	p, _ := Predict([]Rule{r}, []Flow{flow("192.0.2.3:1", "198.51.100.2:80", "198.51.100.1:40000")}, nil, "any", 6,
		Tuple{Src: ap("192.0.2.2:40000"), Dst: ap("198.51.100.2:80")})
	if !p.Drop || !p.Matches(netip.AddrPort{}) || !strings.Contains(p.Why, "insert_failed") {
		t.Errorf("pick = %+v, want a drop that matches no arrival and names insert_failed", p)
	}
}

func TestPredictNoRule(t *testing.T) {
	r := Rule{Masquerade: true, OutInterface: "eth1"}
	if _, ok := Predict([]Rule{r}, nil, nil, "eth0", 6, Tuple{Src: ap("192.0.2.2:1"), Dst: ap("198.51.100.2:80")}); ok {
		t.Error("a rule for eth1 matched a connection leaving by eth0")
	}
}
