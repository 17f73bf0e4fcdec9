package rules

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/inet"
)

func TestParseKernel(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Kernel
	}{
		{"6.1", Kernel{Major: 6, Minor: 1}},
		{"5.10.262", Kernel{Major: 5, Minor: 10, Patch: 262}},
		{"6.12.118+deb13-cloud-amd64", Kernel{Major: 6, Minor: 12, Patch: 118}},
		{"6.18.44-fc-v782", Kernel{Major: 6, Minor: 18, Patch: 44}},
		{" 5.15.0-91-generic\n", Kernel{Major: 5, Minor: 15}},
		{"6.6.87.2-microsoft-standard-WSL2", Kernel{Major: 6, Minor: 6, Patch: 87}},
		{"6.1-rc3", Kernel{Major: 6, Minor: 1}},
	} {
		got, err := ParseKernel(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseKernel(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "6", "linux", "v6.1", "1.2", "6.1000", "6.1.x", "6.1.", "6.1x", "6.1.192x"} {
		if _, err := ParseKernel(bad); err == nil {
			t.Errorf("ParseKernel(%q) accepted", bad)
		}
	}
}

// Debian keeps the ABI name in uname -r; the stable patch level is in -v.
func TestKernelFromUname(t *testing.T) {
	k, err := KernelFromUname("6.1.0-57-cloud-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-01-10)")
	if err != nil || k != (Kernel{Major: 6, Minor: 1, Patch: 192}) {
		t.Fatalf("got %v, %v", k, err)
	}
	// A version string naming another series is not believed.
	k, _ = KernelFromUname("5.10.0-46-cloud-amd64", "#1 SMP Debian 6.1.1-1")
	if k != (Kernel{Major: 5, Minor: 10}) {
		t.Fatalf("got %v", k)
	}
}

func TestKernelAtLeast(t *testing.T) {
	k := Kernel{Major: 6, Minor: 1, Patch: 192}
	for _, c := range []struct {
		maj, min, patch int
		want            bool
	}{{6, 1, 0, true}, {6, 1, 192, true}, {6, 1, 193, false}, {6, 3, 0, false}, {5, 10, 999, true}, {7, 0, 0, false}} {
		if got := k.AtLeast(c.maj, c.min, c.patch); got != c.want {
			t.Errorf("%v.AtLeast(%d.%d.%d) = %v", k, c.maj, c.min, c.patch, got)
		}
	}
	if !(Kernel{}).AtLeast(6, 18, 999) || (Kernel{}).String() != "6.18" {
		t.Error("the zero Kernel must be the newest")
	}
}

// IP_LOCAL_PORT_RANGE is unknown before 6.3 unless a probe found it.
func TestPortRangeOptionPerKernel(t *testing.T) {
	s := Socket{Proto: inet.TCP, Family: inet.IPv4, PortRange: inet.PortRange{Lo: 41000, Hi: 41000}}
	op := Op{Kind: OpConnect, Addr: netip.MustParseAddrPort("127.0.0.1:80")}
	for _, c := range []struct {
		k    Kernel
		want syscall.Errno
	}{
		{Kernel{Major: 5, Minor: 10}, syscall.ENOPROTOOPT},
		{Kernel{Major: 6, Minor: 1}, syscall.ENOPROTOOPT},
		{Kernel{Major: 6, Minor: 1, PortRangeOpt: Present}, 0},
		{Kernel{Major: 6, Minor: 3}, 0},
		{Kernel{Major: 6, Minor: 12, PortRangeOpt: Absent}, syscall.ENOPROTOOPT},
		{Kernel{}, 0},
	} {
		h := DefaultHost()
		h.Kernel = c.k
		out := Predict(World{Host: h}, s, op)
		if out.Err != c.want {
			t.Errorf("kernel %v (probe %d): %s, want %s", c.k, c.k.PortRangeOpt, out.ErrName(), ErrnoName(c.want))
		}
	}
}

// TIME_WAIT reuse: 6.13+ wait tcp_tw_reuse_delay after the entry; older
// kernels only for the monotonic clock's second to tick.
func TestTimeWaitReusePerKernel(t *testing.T) {
	tw := Socket{Proto: inet.TCP, Family: inet.IPv4, State: TimeWait, PortFromConnect: true, TWTimestamps: true,
		Local: netip.MustParseAddrPort("127.0.0.1:40000"), Remote: netip.MustParseAddrPort("127.0.0.1:80")}
	listener := Socket{Proto: inet.TCP, Family: inet.IPv4, State: Listen, Local: netip.MustParseAddrPort("127.0.0.1:80")}
	op := Op{Kind: OpConnect, Addr: netip.MustParseAddrPort("127.0.0.1:80")}
	for _, c := range []struct {
		name   string
		k      Kernel
		age    time.Duration
		ticked bool
		want   syscall.Errno
	}{
		{"6.18 before the delay", Kernel{}, 500 * time.Millisecond, true, syscall.EADDRNOTAVAIL},
		{"6.18 after the delay", Kernel{}, 1500 * time.Millisecond, false, 0},
		{"5.10 same second", Kernel{Major: 5, Minor: 10}, 10 * time.Millisecond, false, syscall.EADDRNOTAVAIL},
		{"5.10 second ticked", Kernel{Major: 5, Minor: 10}, 10 * time.Millisecond, true, 0},
		{"6.12 a second later", Kernel{Major: 6, Minor: 12}, time.Second, false, 0},
	} {
		h := DefaultHost()
		h.Kernel = c.k
		h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40000}
		s := tw
		s.TWAge, s.TWSecondTicked = c.age, c.ticked
		out := Predict(World{Host: h, Sockets: []Socket{listener, s}}, Socket{Proto: inet.TCP, Family: inet.IPv4}, op)
		if out.Err != c.want {
			t.Errorf("%s: %s (%s), want %s", c.name, out.ErrName(), out.Why, ErrnoName(c.want))
		}
	}
}

// A bind()-bound owner that left keeps its port out of connect()'s pool
// before 6.18 while a connect()-bound owner keeps the bucket alive.
func TestBindMarkPerKernel(t *testing.T) {
	c1 := Socket{Proto: inet.TCP, Family: inet.IPv4, State: Connected, PortFromConnect: true,
		Local: netip.MustParseAddrPort("127.1.1.1:40000"), Remote: netip.MustParseAddrPort("127.0.0.1:30000")}
	srv := Socket{Proto: inet.TCP, Family: inet.IPv4, State: Listen, ReuseAddr: true, Local: netip.MustParseAddrPort("127.0.0.1:30000")}
	op := Op{Kind: OpConnect, Addr: netip.MustParseAddrPort("127.0.0.1:30000"), Source: netip.MustParseAddr("127.2.2.2")}
	s := Socket{Proto: inet.TCP, Family: inet.IPv4, State: Bound, BindNoPort: true, Local: netip.MustParseAddrPort("127.2.2.2:0")}
	for _, c := range []struct {
		k    Kernel
		want syscall.Errno
	}{{Kernel{}, 0}, {Kernel{Major: 6, Minor: 18}, 0}, {Kernel{Major: 6, Minor: 12, Patch: 118}, syscall.EADDRNOTAVAIL}, {Kernel{Major: 5, Minor: 10}, syscall.EADDRNOTAVAIL}} {
		h := DefaultHost()
		h.Kernel = c.k
		h.Local = append(h.Local, netip.MustParsePrefix("127.0.0.0/8"))
		h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40000}
		out := Predict(World{Host: h, Sockets: []Socket{srv, c1}, BindMarked: []uint16{40000}}, s, op)
		if out.Err != c.want {
			t.Errorf("kernel %v: %s (%s), want %s", c.k, out.ErrName(), out.Why, ErrnoName(c.want))
		}
		// Without the mark every kernel shares the port.
		if out := Predict(World{Host: h, Sockets: []Socket{srv, c1}}, s, op); out.Err != 0 {
			t.Errorf("kernel %v without the mark: %s (%s)", c.k, out.ErrName(), out.Why)
		}
	}
}

func FuzzParseKernel(f *testing.F) {
	for _, s := range []string{"6.1", "5.10.262", "6.12.118+deb13-cloud-amd64", "x", "99.999.99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKernel(s)
		if err != nil {
			return
		}
		again, err := ParseKernel(k.String())
		if err != nil || (again.Major != k.Major || again.Minor != k.Minor || again.Patch != k.Patch) {
			t.Fatalf("%q -> %v -> %v, %v", s, k, again, err)
		}
	})
}

// 6.1's bhash2 lets [::ffff:127.0.0.1] through beside a [::ffff:0.0.0.0]
// owner; 5.10, 6.12 and 6.18 refuse, and an AF_INET 0.0.0.0 owner is found
// on every kernel.
func TestMappedBesideMappedWildcardPerKernel(t *testing.T) {
	mappedAny := Socket{Proto: inet.TCP, Family: inet.IPv6, State: Bound, Local: netip.MustParseAddrPort("[::ffff:0.0.0.0]:8080")}
	v4Any := Socket{Proto: inet.TCP, Family: inet.IPv4, State: Bound, Local: netip.MustParseAddrPort("0.0.0.0:8080")}
	op := Op{Kind: OpBind, Addr: netip.MustParseAddrPort("[::ffff:127.0.0.1]:8080")}
	s := Socket{Proto: inet.TCP, Family: inet.IPv6}
	for _, c := range []struct {
		k              Kernel
		mapped, v4wild syscall.Errno
	}{
		{Kernel{Major: 5, Minor: 10, Patch: 262}, syscall.EADDRINUSE, syscall.EADDRINUSE},
		{Kernel{Major: 6, Minor: 1, Patch: 192}, 0, syscall.EADDRINUSE},
		{Kernel{Major: 6, Minor: 12, Patch: 118}, syscall.EADDRINUSE, syscall.EADDRINUSE},
		{Kernel{}, syscall.EADDRINUSE, syscall.EADDRINUSE},
	} {
		h := DefaultHost()
		h.Kernel = c.k
		if out := Predict(World{Host: h, Sockets: []Socket{mappedAny}}, s, op); out.Err != c.mapped {
			t.Errorf("%v beside [::ffff:0.0.0.0]: %s, want %s", c.k, out.ErrName(), ErrnoName(c.mapped))
		}
		if out := Predict(World{Host: h, Sockets: []Socket{v4Any}}, s, op); out.Err != c.v4wild {
			t.Errorf("%v beside 0.0.0.0: %s, want %s", c.k, out.ErrName(), ErrnoName(c.v4wild))
		}
	}
}

// TestCrowdedUDPSlotPerKernel: past ten sockets in a port's slot of the UDP
// hash, bind() to an address walks that address's chain and then the
// wildcard's instead of the slot (the lab's udp-eleven-on-a-port and
// udp-wildcard-on-a-crowded-port, run on each kernel); with ten, the
// slot's walk decides as before.
func TestCrowdedUDPSlotPerKernel(t *testing.T) {
	udp := func(addr string, reuseAddr, reusePort bool) Socket {
		return Socket{Proto: inet.UDP, Family: inet.IPv4, State: Bound, ReuseAddr: reuseAddr, ReusePort: reusePort,
			Local: netip.MustParseAddrPort(addr)}
	}
	fillers := func(n int, reuseAddr bool) []Socket {
		var s []Socket
		for i := range n {
			s = append(s, udp(fmt.Sprintf("127.0.1.%d:5353", i+1), reuseAddr, false))
		}
		return s
	}
	// A (127.0.0.1, SO_REUSEADDR) bound first, W (the wildcard, both
	// options) last: the slot's walk meets W first, 127.0.0.1's chain A.
	trap := func(n int) []Socket {
		s := []Socket{udp("127.0.0.1:5353", true, false)}
		s = append(s, fillers(n, true)...)
		return append(s, udp("0.0.0.0:5353", true, true))
	}
	joiner := Socket{Proto: inet.UDP, Family: inet.IPv4, ReusePort: true}
	wild := Socket{Proto: inet.UDP, Family: inet.IPv4}
	at := func(a string) Op { return Op{Kind: OpBind, Addr: netip.MustParseAddrPort(a)} }
	for _, k := range []Kernel{{Major: 5, Minor: 10, Patch: 262}, {Major: 6, Minor: 1, Patch: 192}, {Major: 6, Minor: 12}, {}} {
		h := DefaultHost()
		h.Kernel = k
		for _, c := range []struct {
			what  string
			world []Socket
			s     Socket
			op    Op
			want  syscall.Errno
		}{
			{"ten sockets, joining W", trap(8), joiner, at("127.0.0.1:5353"), 0},
			{"eleven sockets, A's chain first", trap(9), joiner, at("127.0.0.1:5353"), syscall.EADDRINUSE},
			{"ten on 127.0.1.x, then the wildcard", fillers(10, false), wild, at("0.0.0.0:5353"), syscall.EADDRINUSE},
			{"eleven on 127.0.1.x, then the wildcard", fillers(11, false), wild, at("0.0.0.0:5353"), map[bool]syscall.Errno{true: syscall.EADDRINUSE, false: 0}[k.AtLeast(6, 1, 0)]},
			{"eleven on 127.0.1.x, then 127.0.1.1", fillers(11, false), wild, at("127.0.1.1:5353"), syscall.EADDRINUSE},
		} {
			out := Predict(World{Host: h, Sockets: c.world}, c.s, c.op)
			if out.Err != c.want {
				t.Errorf("%v, %s: %s, want %s (%s)", k, c.what, out.ErrName(), ErrnoName(c.want), out.Why)
			}
			// 5.10's wildcard bind past the crowd says what it skipped.
			if c.want == 0 && c.op.Addr.Addr().IsUnspecified() && !strings.Contains(out.Why, "does not look at 11 overlapping socket(s) bound to other addresses") {
				t.Errorf("%v, %s: the reason does not say what the kernel skipped: %s", k, c.what, out.Why)
			}
		}
	}
	// A probe of the running kernel overrides the version: an older 6.x
	// point release without the fix, a 5.10 with it backported.
	for _, c := range []struct {
		k    Kernel
		want syscall.Errno
	}{
		{Kernel{Major: 6, Minor: 6, Patch: 100, UDPWildcardFix: Absent}, 0},
		{Kernel{Major: 5, Minor: 10, Patch: 262, UDPWildcardFix: Present}, syscall.EADDRINUSE},
	} {
		h := DefaultHost()
		h.Kernel = c.k
		if out := Predict(World{Host: h, Sockets: fillers(11, false)}, wild, at("0.0.0.0:5353")); out.Err != c.want {
			t.Errorf("%v (probe %d), eleven on 127.0.1.x, then the wildcard: %s, want %s", c.k, c.k.UDPWildcardFix, out.ErrName(), ErrnoName(c.want))
		}
	}
	// Ports equal modulo the table's size share its slots.
	h := DefaultHost()
	h.UDPHashSlots = 256
	w := trap(4)
	for i := range 5 {
		w = append(w, udp(fmt.Sprintf("127.0.2.%d:%d", i+1, 5353+256), false, false))
	}
	if out := Predict(World{Host: h, Sockets: w}, joiner, at("127.0.0.1:5353")); out.Err != syscall.EADDRINUSE {
		t.Errorf("eleven sockets in a slot of 256, five on port 5609: %s, want EADDRINUSE (%s)", out.ErrName(), out.Why)
	}
	h.UDPHashSlots = 0
	if out := Predict(World{Host: h, Sockets: w}, joiner, at("127.0.0.1:5353")); out.Err != 0 {
		t.Errorf("the same, the table's size unknown: %s, want ok (%s)", out.ErrName(), out.Why)
	}
}
