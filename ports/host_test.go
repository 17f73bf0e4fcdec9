package ports

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tuple-net/tuple/rules"
)

func TestParseReservedPorts(t *testing.T) {
	got, err := ParseReservedPorts([]byte("8080,40000-40009\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []rules.PortRange{{Lo: 8080, Hi: 8080}, {Lo: 40000, Hi: 40009}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"x", "1-", "9-1", "70000", "1,,2"} {
		if _, err := ParseReservedPorts([]byte(bad)); err == nil {
			t.Errorf("ParseReservedPorts(%q): no error", bad)
		}
	}
}

func TestParseLocalPortRange(t *testing.T) {
	got, err := ParseLocalPortRange([]byte("32768\t60999\n"))
	if err != nil || got != (rules.PortRange{Lo: 32768, Hi: 60999}) {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "1", "2 1", "1 2 3", "a b"} {
		if _, err := ParseLocalPortRange([]byte(bad)); err == nil {
			t.Errorf("ParseLocalPortRange(%q): no error", bad)
		}
	}
}

func TestReadHostFixture(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "sys", "net", "ipv4")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"ip_local_port_range":     "40000\t40019\n",
		"ip_local_reserved_ports": "40005\n",
		"tcp_tw_reuse":            "1\n",
		"tcp_tw_reuse_delay":      "500\n",
	}
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h, err := ReadHost(root)
	if err != nil {
		t.Fatal(err)
	}
	if h.EphemeralRange != (rules.PortRange{Lo: 40000, Hi: 40019}) || len(h.ReservedPorts) != 1 ||
		h.TCPTWReuse != 1 || h.TWReuseDelay != 500*time.Millisecond {
		t.Errorf("ReadHost = %+v", h)
	}
}

func FuzzParseReservedPorts(f *testing.F) {
	f.Add([]byte("8080,40000-40009"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := ParseReservedPorts(b)
		for _, r := range rs {
			if err == nil && r.Lo > r.Hi {
				t.Errorf("%q: range %v inverted", b, r)
			}
		}
	})
}

func FuzzParseLocalPortRange(f *testing.F) {
	f.Add([]byte("32768\t60999"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseLocalPortRange(b)
		if err == nil && r.Lo > r.Hi {
			t.Errorf("%q: inverted %v", b, r)
		}
	})
}
