package hostmodel

import (
	"net/netip"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/rules"
)

func TestMain(m *testing.M) {
	// The runtime's netpoller (an epoll and an eventfd, kept for the life
	// of the process) starts with the first pipe; start it before
	// leakcheck counts, so it is not taken for a leak.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	leakcheck.Main(m)
}

// TestReadHostInNamespace checks the local addresses and sysctls against a
// namespace the test configures.
func TestReadHostInNamespace(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32", "fd00::1/128")
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40100")
	ns.Sysctl(t, "net.ipv4.ip_local_reserved_ports", "40001,40010-40012")
	ns.Sysctl(t, "net.ipv6.bindv6only", "1")
	var (
		host  rules.Host
		notes []string
	)
	err := ns.Do(func() (err error) {
		host, notes, err = ReadHost("")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"127.0.0.0/8", "10.0.0.1/32", "::1/128", "fd00::1/128"} {
		if !slices.Contains(host.Local, netip.MustParsePrefix(want)) {
			t.Errorf("local prefixes %v lack %s", host.Local, want)
		}
	}
	if IsLocal(host, netip.MustParseAddr("10.0.0.2")) || !IsLocal(host, netip.MustParseAddr("127.3.4.5")) ||
		!IsLocal(host, netip.MustParseAddr("::ffff:10.0.0.1")) {
		t.Errorf("IsLocal wrong with %v", host.Local)
	}
	if host.EphemeralRange.Lo != 40000 || host.EphemeralRange.Hi != 40100 || len(host.ReservedPorts) != 2 || !host.BindV6Only {
		t.Errorf("sysctls not read from the namespace: %+v", host)
	}
	t.Logf("notes: %q", notes)
}

func FuzzParseLocalRoutes(f *testing.F) {
	if b, err := syscall.NetlinkRIB(syscall.RTM_GETROUTE, syscall.AF_UNSPEC); err == nil {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := ParseLocalRoutes(b)
		if err != nil {
			return
		}
		for _, p := range ps {
			if !p.IsValid() {
				t.Fatalf("invalid prefix %v", p)
			}
		}
	})
}
