package hostmodel

import (
	"net/netip"
	"testing"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

// TestProbeUDPWildcardFix: the probe finds the fix of CVE-2026-31503 on
// the kernels CI runs it on (6.18 here; Debian's 6.1 and 6.12 carry it
// too, its 5.10 does not), where the version says the same.
func TestProbeUDPWildcardFix(t *testing.T) {
	netnstest.RequireRoot(t)
	k, err := RunningKernel()
	if err != nil {
		t.Fatal(err)
	}
	want := rules.Absent
	if k.AtLeast(6, 1, 0) {
		want = rules.Present
	}
	if got := ProbeUDPWildcardFix(); got != want {
		t.Errorf("kernel %v: probe %d, want %d", k, got, want)
	}
}

func TestUDPSlotCrowded(t *testing.T) {
	on := func(ports ...uint16) []socktab.Socket {
		var s []socktab.Socket
		for i, p := range ports {
			s = append(s, socktab.Socket{Proto: inet.UDP, Local: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(i)}), p)})
		}
		return s
	}
	ten := on(53, 53, 53, 53, 53, 53, 53, 53, 53, 53)
	for _, c := range []struct {
		what  string
		socks []socktab.Socket
		slots int
		want  bool
	}{
		{"ten on a port", ten, 0, false},
		{"eleven on a port", append(on(53), ten...), 0, true},
		{"ten, and one on a port sharing the slot", append(on(53+256), ten...), 256, true},
		{"ten, and one on a port of its own slot", append(on(53+256), ten...), 16384, false},
		{"unbound sockets do not count", append(on(0), ten...), 0, false},
		{"TCP sockets do not count", append([]socktab.Socket{{Proto: inet.TCP, Local: netip.MustParseAddrPort("127.0.0.1:53")}}, ten...), 0, false},
	} {
		if got := udpSlotCrowded(c.socks, rules.Host{UDPHashSlots: c.slots}); got != c.want {
			t.Errorf("%s: %v, want %v", c.what, got, c.want)
		}
	}
}
