package exporter

import (
	"bytes"
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// inNamespace reads the live table and sysctls of ns: the snapshot runs on
// the thread ns.Do enters, whichever goroutine the scrape runs on.
func inNamespace(t *testing.T, ns *netnstest.NS) Source {
	live := LiveSource("", false, true)
	t.Cleanup(func() { live.Close() })
	return SourceFunc(func(ctx context.Context) Input {
		var in Input
		if err := ns.Do(func() error { in = live.Read(ctx); return nil }); err != nil {
			in.TableErr = err
		}
		return in
	})
}

// TestExporterLiveNamespace scrapes the exporter over HTTP for a namespace
// with real sockets (range 40000-40019, three connections to 10.0.0.1:80,
// four ports bound by uid 65534), checks the values against what the test
// built and lints the output with promtool.
func TestExporterLiveNamespace(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32")
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40019")
	var fds []int
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
			unix.Close(fd)
		}
	})
	sock := func() int {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
		return fd
	}
	dst := netip.MustParseAddrPort("10.0.0.1:80")
	sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	err := ns.Do(func() error {
		ln := sock()
		if err := unix.Bind(ln, sa); err != nil {
			return err
		}
		if err := unix.Listen(ln, 16); err != nil {
			return err
		}
		for range 3 {
			if err := unix.Connect(sock(), sa); err != nil {
				return err
			}
		}
		// Bound-only sockets owned by uid 65534 (setfsuid is per thread).
		if err := unix.Setfsuid(65534); err != nil {
			return err
		}
		defer unix.Setfsuid(0)
		for range 4 {
			if err := unix.Bind(sock(), &unix.SockaddrInet4{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	body := scrape(t, New(inNamespace(t, ns), Options{}))
	for _, want := range []string{
		`tuple_ephemeral_ports 20`,
		`tuple_ephemeral_ports_in_use{destination="10.0.0.1:80",source="10.0.0.1"} 3`,
		`tuple_ephemeral_ports_free{bound="upper",destination="10.0.0.1:80",source="10.0.0.1"} 13`,
		`tuple_ephemeral_ports_free{bound="lower",destination="10.0.0.1:80",source="10.0.0.1"} 13`,
		`tuple_ephemeral_ports_free{bound="upper",destination="*",source="*"} 16`,
		`tuple_bound_only_sockets{uid="65534"} 4`,
		`tuple_ephemeral_ports_held{uid="65534"} 4`,
		`tuple_sockets{proto="tcp",state="established"} 6`,
		`tuple_sockets{proto="tcp",state="listen"} 1`,
		`tuple_sockets{proto="tcp",state="bound"} 4`,
		`tuple_scrape_collector_success{collector="ephemeral"} 1`,
		`tuple_scrape_collector_success{collector="sockets"} 1`,
		`tuple_scrape_collector_success{collector="holders"} 1`,
	} {
		if !bytes.Contains(body, []byte("\n"+want+"\n")) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", grepTuple(body))
	}
	promtool := requirePromtool(t)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func grepTuple(body []byte) string {
	var b strings.Builder
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "tuple_") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
