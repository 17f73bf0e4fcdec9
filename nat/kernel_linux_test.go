package nat

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/nftables"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/nattest"
	"github.com/tuple-net/tuple/internal/netnstest"
)

var (
	natAddr = nattest.NATAddr
	destA   = nattest.DestA
	destB   = nattest.DestB
)

// topology is nattest's three namespaces with rules installed on the
// router by Apply.
type topology struct{ *nattest.Topology }

func newTopology(t *testing.T, rules ...Rule) topology {
	t.Helper()
	return topology{nattest.New(t, func(fd int) error { return Apply(fd, nftables.TableFamilyIPv4, rules) })}
}

func (tp topology) snapshot(t *testing.T) Snapshot {
	t.Helper()
	var s Snapshot
	if err := tp.Router.Do(func() (err error) {
		s, err = Read(context.Background())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

func budgetFor(t *testing.T, bs []Budget, dest netip.AddrPort) Budget {
	t.Helper()
	for _, b := range bs {
		if b.Destination == dest && b.NATAddress == natAddr && b.Proto == "tcp" {
			return b
		}
	}
	t.Fatalf("no budget for %s in %+v", dest, bs)
	return Budget{}
}

// The prediction is the kernel's: with a narrowed SNAT range and two
// destinations, the free count Budgets reports for each destination is the
// number of further connections the kernel allows, exactly.
func TestPredictedFreePortsMatchKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	rule := Rule{ToMin: natAddr, ToMax: natAddr, Ports: inet.PortRange{Lo: 40000, Hi: 40009}, OutInterface: nattest.OutInterface}
	tp := newTopology(t, rule)
	tp.Open(t, destA, 7)
	tp.Open(t, destB, 3)

	before := tp.snapshot(t)
	if len(before.Rules) != 1 || before.Rules[0].Ports != rule.Ports {
		t.Fatalf("rules read back = %+v, want the one SNAT rule with ports %v", before.Rules, rule.Ports)
	}
	bs := before.Budgets()
	a, b := budgetFor(t, bs, destA), budgetFor(t, bs, destB)
	if a.Free != 3 || b.Free != 7 || !a.Exhaustive {
		t.Fatalf("predicted free: %s %d, %s %d (want 3 and 7, exhaustive)", destA, a.Free, destB, b.Free)
	}

	// Open connections until the kernel refuses; count them.
	further := func(dest netip.AddrPort, limit int) int {
		return tp.Further(t, dest, limit, rule.Ports.Lo, rule.Ports.Hi)
	}
	if n := further(destA, a.Free+2); n != a.Free {
		t.Errorf("kernel allowed %d further connections to %s, predicted %d", n, destA, a.Free)
	}
	if n := further(destB, b.Free+2); n != b.Free {
		t.Errorf("kernel allowed %d further connections to %s, predicted %d", n, destB, b.Free)
	}
	after := tp.snapshot(t)
	if after.Counters.InsertFailed <= before.Counters.InsertFailed {
		t.Errorf("conntrack insert_failed %d -> %d: the refused connections should count there",
			before.Counters.InsertFailed, after.Counters.InsertFailed)
	}
	for _, d := range []netip.AddrPort{destA, destB} {
		if got := budgetFor(t, after.Budgets(), d); got.Free != 0 {
			t.Errorf("%s: %d free after exhaustion, want 0", d, got.Free)
		}
	}
}

// The seed's "NAT trickery": behind a masquerading router two inside
// clients on the same source port keep it outside when their destinations
// differ; towards one destination the second is rewritten.
func TestMasqueradeKeepsSourcePortPerDestination(t *testing.T) {
	netnstest.RequireRoot(t)
	tp := newTopology(t, Rule{Masquerade: true, OutInterface: nattest.OutInterface})
	c1 := netip.MustParseAddrPort("192.0.2.2:12345")
	c2 := netip.MustParseAddrPort("192.0.2.3:12345")

	if _, err := tp.Dial(t, c1, destA); err != nil {
		t.Fatal(err)
	}
	if got := tp.Outside(t); got != netip.AddrPortFrom(natAddr, 12345) {
		t.Errorf("first client seen as %s, want %s:12345", got, natAddr)
	}
	if _, err := tp.Dial(t, c2, destB); err != nil {
		t.Fatal(err)
	}
	if got := tp.Outside(t); got != netip.AddrPortFrom(natAddr, 12345) {
		t.Errorf("second client to another destination seen as %s, want the same port kept", got)
	}
	// A third client on port 12345 towards the first destination: the
	// outside four-tuple is taken, so the NAT picks another port.
	if _, err := tp.Dial(t, netip.MustParseAddrPort("192.0.2.4:12345"), destA); err != nil {
		t.Fatal(err)
	}
	if got := tp.Outside(t); got.Addr() != natAddr || got.Port() == 12345 {
		t.Errorf("third client to the first destination seen as %s, want %s with another port", got, natAddr)
	}
}

// A port range on the SNAT rule keeps a client's source port that is inside
// it (the kernel checks the original port first); fully-random makes the
// kernel search from a random offset every time, so the picks vary.
func TestSNATRangeKeepsInRangePortUnlessRandom(t *testing.T) {
	netnstest.RequireRoot(t)
	ports := inet.PortRange{Lo: 40000, Hi: 40009}
	for _, random := range []bool{false, true} {
		tp := newTopology(t, Rule{ToMin: natAddr, ToMax: natAddr, Ports: ports, OutInterface: nattest.OutInterface, FullyRandom: random})
		kept := 0
		for i := range 6 {
			// Six distinct destinations, so no outside tuple clashes:
			// every in-range port could be kept.
			dest := netip.AddrPortFrom(destA.Addr(), uint16(81+i))
			tp.Listen(t, dest)
			src := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), uint16(40001+i))
			if _, err := tp.Dial(t, src, dest); err != nil {
				t.Fatalf("random=%v dial %s -> %s: %v", random, src, dest, err)
			}
			if tp.Outside(t).Port() == src.Port() {
				kept++
			}
		}
		if !random && kept != 6 {
			t.Errorf("without random the in-range source ports were kept %d times of 6, want every time", kept)
		}
		// The chance that six random picks from ten ports all hit the
		// source port is one in a million.
		if random && kept == 6 {
			t.Errorf("fully-random kept the source port all 6 times")
		}
		t.Logf("random=%v: source port kept %d of 6 times", random, kept)
	}
}
