package socktab

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/inet"
)

func TestParseFilter(t *testing.T) {
	for in, want := range map[string]string{
		"sport = :8080":                         "sport = :8080",
		"dport != :22":                          "dport != :22",
		"src 127.0.0.1":                         "src 127.0.0.1",
		"dst 10.0.0.0/8":                        "dst 10.0.0.0/8",
		"src [::1]:53":                          "src [::1]:53",
		"dst :443":                              "dst *:443",
		"sport gt :1024 and sport lt :2000":     "(sport > :1024 and sport < :2000)",
		"( sport = :80 or sport = :443 )":       "(sport = :80 or sport = :443)",
		"!(dport = :22)":                        "not dport = :22",
		"state established sport = :80":         "state established sport = :80",
		"sport = :1 dport = :2 or src 10.0.0.1": "((sport = :1 and dport = :2) or src 10.0.0.1)",
		"state listening":                       "state listen",
		"":                                      "",
	} {
		f, err := ParseFilter(strings.Fields(in))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := f.String(); got != want {
			t.Errorf("%q: parsed as %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"sport", "sport = :80000", "sport = :http", "src 1.2.3", "(sport = :1", "sport = :1 )", "or sport = :1",
		"sport = :1 or state listen", "not state listen", "state nosuch", "bogus", "src = ", "src > 1.2.3.4", "dst [::1",
		// A zone was dropped: the condition matched every interface.
		"src fe80::1%lo", "dst [fe80::1%2]:80",
		// A stray "and" was skipped: ss refuses these too.
		"and", "sport = :1 and", "sport = :1 and and dport = :2", "and sport = :1", "( sport = :1 and ) or dport = :2"} {
		if _, err := ParseFilter(strings.Fields(bad)); err == nil || !strings.HasPrefix(err.Error(), "filter expression") {
			t.Errorf("%q: error %v, want one naming the filter expression", bad, err)
		}
	}
}

var filterAddrs = []string{"127.0.0.1", "10.0.0.1", "10.1.2.3", "0.0.0.0", "::", "::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"}

func randSocket(r *rand.Rand) Socket {
	pick := func() netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr(filterAddrs[r.IntN(len(filterAddrs))]), []uint16{0, 22, 80, 443, 8080, 50000}[r.IntN(6)])
	}
	s := Socket{Proto: inet.TCP, State: State(1 + r.IntN(int(numStates)-1)), Local: pick(), Remote: pick(), Family: inet.IPv4}
	if s.Local.Addr().Is6() || s.Remote.Addr().Is6() {
		s.Family = inet.IPv6
		s.Local = netip.AddrPortFrom(netip.AddrFrom16(s.Local.Addr().As16()), s.Local.Port())
		s.Remote = netip.AddrPortFrom(netip.AddrFrom16(s.Remote.Addr().As16()), s.Remote.Port())
	}
	return s
}

var filterWords = []string{"sport", "dport", "src", "dst", "=", "!=", ">=", "<=", ">", "<", ":80", ":443", ":8080", "127.0.0.1",
	"10.0.0.0/8", "[::1]", "::ffff:127.0.0.1", "[fd00::/16]:80", "*:22", "and", "or", "not", "(", ")", "!", "state", "established", "listening"}

// TestFilterBytecodeMatchesMatch: for random expressions and sockets, the
// compiled bytecode (run as the kernel runs it, after the kernel's audit)
// selects exactly what Match selects.
func TestFilterBytecodeMatchesMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	parsed := 0
	for range 20000 {
		var words []string
		for range 1 + r.IntN(9) {
			words = append(words, filterWords[r.IntN(len(filterWords))])
		}
		f, err := ParseFilter(words)
		if err != nil {
			continue
		}
		parsed++
		checkFilter(t, f, words, r)
	}
	// Expressions built to be valid, deeper than random words reach.
	var gen func(depth int) string
	gen = func(depth int) string {
		k := r.IntN(7)
		if depth > 3 {
			k = r.IntN(3)
		}
		switch k {
		case 0:
			return []string{"sport", "dport"}[r.IntN(2)] + " " + []string{"=", "!=", ">=", "<=", ">", "<", "eq", "gt"}[r.IntN(8)] + " " +
				[]string{":80", ":443", ":8080", "22", ":0"}[r.IntN(5)]
		case 1:
			return []string{"src", "dst"}[r.IntN(2)] + " " + []string{"127.0.0.1", "10.0.0.0/8", "[::1]", "::ffff:127.0.0.1", "[fd00::/16]:80",
				"*:22", "10.0.0.1:8080", "0.0.0.0/0", "[::]:80", "::/0"}[r.IntN(10)]
		case 2:
			return "not " + gen(depth+1)
		case 3:
			return "( " + gen(depth+1) + " or " + gen(depth+1) + " )"
		case 4:
			return gen(depth+1) + " and " + gen(depth+1)
		case 5:
			return gen(depth+1) + " || " + gen(depth+1)
		}
		return "( " + gen(depth+1) + " " + gen(depth+1) + " )"
	}
	for range 3000 {
		expr := gen(0)
		if r.IntN(4) == 0 {
			expr = "state " + []string{"established", "listening", "time-wait", "connected"}[r.IntN(4)] + " " + expr
		}
		f, err := ParseFilter([]string{expr})
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		checkFilter(t, f, []string{expr}, r)
	}
}

func checkFilter(t *testing.T, f *Filter, words []string, r *rand.Rand) {
	t.Helper()
	bc := f.bytecode()
	if f.expr != nil && !auditBytecode(bc) {
		t.Fatalf("%q: bytecode %x fails the kernel's audit", words, bc)
	}
	again, err := ParseFilter([]string{f.String()})
	if err != nil || again.String() != f.String() {
		t.Fatalf("%q: String %q does not parse back (%v)", words, f.String(), err)
	}
	for range 20 {
		s := randSocket(r)
		e := diagEntry{family: s.Family, sport: int(s.Local.Port()), dport: int(s.Remote.Port()), saddr: s.Local.Addr(), daddr: s.Remote.Addr()}
		kernel := (f.States == 0 || f.States.Has(s.State)) && (bc == nil || runBytecode(bc, e))
		if got := f.Match(&s); got != kernel {
			t.Fatalf("%q (%s) on %s %s -> %s: Match %v, bytecode %v", words, f, s.State, s.Local, s.Remote, got, kernel)
		}
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"sport = :8080", "dport != :22 and src 127.0.0.1", "state established ( sport = :80 or sport = :443 )",
		"not dst [fd00::/64]:80", "src *:22"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter([]string{s})
		if err != nil {
			return
		}
		checkFilter(t, flt, []string{s}, rand.New(rand.NewPCG(uint64(len(s)), 7)))
	})
}
