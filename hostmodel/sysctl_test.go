package hostmodel

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
)

func TestParseReservedPorts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []inet.PortRange
		bad  bool
	}{
		{in: "", want: nil},
		{in: "\n", want: nil},
		{in: "8080\n", want: []inet.PortRange{{Lo: 8080, Hi: 8080}}},
		{in: "1,2-4", want: []inet.PortRange{{Lo: 1, Hi: 1}, {Lo: 2, Hi: 4}}},
		{in: "40000-40010,50000\n", want: []inet.PortRange{{Lo: 40000, Hi: 40010}, {Lo: 50000, Hi: 50000}}},
		{in: "5-3", bad: true},
		{in: "1,,2", bad: true},
		{in: "70000", bad: true},
		{in: "-1", bad: true},
		{in: "a-b", bad: true},
		{in: "1-2-3", bad: true},
	} {
		got, err := parseReservedPorts([]byte(tc.in))
		if tc.bad {
			if err == nil {
				t.Errorf("parseReservedPorts(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseReservedPorts(%q): %v", tc.in, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("parseReservedPorts(%q) -want +got:\n%s", tc.in, d)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	got, err := ParsePortRange([]byte("32768\t60999\n"))
	if err != nil || got != (inet.PortRange{Lo: 32768, Hi: 60999}) {
		t.Errorf("ParsePortRange = %v, %v", got, err)
	}
	for _, bad := range []string{"", "1", "1 2 3", "9 8", "1 70000", "x 2"} {
		if r, err := ParsePortRange([]byte(bad)); err == nil {
			t.Errorf("ParsePortRange(%q) = %v, want an error", bad, r)
		}
	}
}

func FuzzParseReservedPorts(f *testing.F) {
	for _, s := range []string{"", "1,2-4", "40000-40010,50000\n", "5-3", "65535", "0-65535"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := parseReservedPorts(b)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Lo > r.Hi {
				t.Fatalf("parseReservedPorts(%q) returned inverted range %v", b, r)
			}
		}
	})
}

func FuzzParsePortRange(f *testing.F) {
	f.Add([]byte("32768 60999"))
	f.Add([]byte("1\t1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParsePortRange(b)
		if err == nil && r.Lo > r.Hi {
			t.Fatalf("ParsePortRange(%q) = %v", b, r)
		}
	})
}

// writeSysctls makes a fake procfs with the given net sysctls.
func writeSysctls(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, v := range files {
		p := filepath.Join(root, "sys", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestSysctls(t *testing.T) {
	root := writeSysctls(t, map[string]string{
		"net/ipv4/ip_local_port_range":        "40000\t40100\n",
		"net/ipv4/ip_local_reserved_ports":    "40001,40010-40012\n",
		"net/ipv4/ip_unprivileged_port_start": "80\n",
		"net/ipv4/ip_nonlocal_bind":           "1\n",
		"net/ipv6/ip_nonlocal_bind":           "0\n",
		"net/ipv6/bindv6only":                 "1\n",
		"net/ipv4/ip_autobind_reuse":          "1\n",
		"net/ipv4/tcp_tw_reuse":               "0\n",
		"net/ipv4/udp_hash_entries":           "-16384\n", // a namespace sharing the host's table
		// tcp_tw_reuse_delay missing, as before Linux 6.13
	})
	h := rules.DefaultHost()
	notes, err := Sysctls(root, &h)
	if err != nil {
		t.Fatal(err)
	}
	want := rules.DefaultHost()
	want.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40100}
	want.ReservedPorts = []inet.PortRange{{Lo: 40001, Hi: 40001}, {Lo: 40010, Hi: 40012}}
	want.UnprivilegedPortStart = 80
	want.NonlocalBind4 = true
	want.BindV6Only = true
	want.AutobindReuse = true
	want.TCPTWReuse = 0
	want.TWReuseDelay = time.Second
	want.UDPHashSlots = 16384
	if d := cmp.Diff(want, h, cmpopts.EquateComparable(netip.Prefix{})); d != "" {
		t.Errorf("Sysctls -want +got:\n%s", d)
	}
	if len(notes) != 1 || notes[0] != "net.ipv4.tcp_tw_reuse_delay not present; using the kernel default" {
		t.Errorf("notes = %q", notes)
	}

	bad := writeSysctls(t, map[string]string{"net/ipv4/ip_local_port_range": "garbage\n"})
	if _, err := Sysctls(bad, &h); err == nil {
		t.Error("Sysctls with a malformed ip_local_port_range: no error")
	}

	// Regression: an unreadable procfs (no port range at all) gave the
	// default range as the host's, silently.
	empty := t.TempDir()
	if _, err := Sysctls(empty, &h); err == nil || !strings.Contains(err.Error(), "ip_local_port_range unreadable") {
		t.Errorf("Sysctls over a directory without procfs: %v, want an error naming the port range", err)
	}
}
