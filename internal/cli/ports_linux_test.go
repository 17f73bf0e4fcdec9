package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/ports"
)

// TestPortsInNamespace runs `tuple ports` through the real code path in a
// namespace with range 40000-40019, three connections to 10.0.0.1:80 and
// uid 65534 holding 12 ports bound without connecting (60%, over the 50%
// default): the report names the destination, the hog and the warning.
func TestPortsInNamespace(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32")
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40019")
	err := ns.Do(func() error {
		tcpSocket(t, "10.0.0.1:80", true)
		for range 3 {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			t.Cleanup(func() { unix.Close(fd) })
			if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 80, Addr: [4]byte{10, 0, 0, 1}}); err != nil {
				return err
			}
		}
		if err := unix.Setfsuid(65534); err != nil { // per thread: sk_uid of the next sockets
			return err
		}
		defer unix.Setfsuid(0)
		for range 12 {
			tcpSocket(t, "0.0.0.0:0", false)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runIn(t, ns, "ports")
	if code != 0 {
		t.Fatalf("tuple ports: exit %d, %s", code, errOut)
	}
	// With the kernel's own socket records (root, kernel BTF) the three
	// connections' ports are known to come from connect(), so they are
	// shareable with a new destination: exactly 20 - 12 bound = 8 free.
	// Without them the origin is unknown and the report is a range.
	free := "connect() free    8 of 20 for a new destination"
	var exact bool
	ns.Do(func() error { exact = ports.ReadFacts() != nil; return nil })
	if !exact {
		free = "connect() free    5..8 of 20 for a new destination"
	}
	for _, want := range []string{
		"Ephemeral range   40000-40019 (20 ports), reserved none, 20 usable",
		free,
		"10.0.0.1  10.0.0.1:80  3       0          5     75.0%",
		"65534  12     60.0%  12",
		"! uid 65534 holds 12 of 20 ephemeral ports (60%, over 50%)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tuple ports lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = runIn(t, ns, "ports", "--json", "--hog-share", "70")
	if code != 0 {
		t.Fatalf("tuple ports --json: exit %d, %s", code, errOut)
	}
	var rep ports.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if rep.Pool != 20 || rep.BoundOnly != 12 || len(rep.Destinations) != 1 || rep.Destinations[0].FreeMax != 5 {
		t.Errorf("JSON report: %+v", rep)
	}
	for _, w := range rep.Warnings {
		if strings.HasPrefix(w, "uid 65534") {
			t.Errorf("--hog-share 70: unexpected warning %q", w)
		}
	}
}
