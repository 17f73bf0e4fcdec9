package netnstest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/testenv"
	"github.com/tuple-net/tuple/netns"
)

// NS is a named network namespace that exists for one test.
type NS struct {
	Name string
}

var seq atomic.Int64

// namePrefix begins every test namespace's name; the creating process's
// pid follows it.
const namePrefix = "tuple-test-"

// sweepOnce removes, once per process, the namespaces that tests of a
// process no longer alive left behind: a panic on a namespace's thread
// ends the process before t.Cleanup runs.
var sweepOnce sync.Once

func sweepDead() {
	entries, err := os.ReadDir(netns.RunDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if deadCreator(e.Name()) {
			_ = exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
}

// deadCreator parses a test namespace's name ("tuple-test-PID-N") and
// reports whether the process that made it is gone.
func deadCreator(name string) bool {
	rest, ok := strings.CutPrefix(name, namePrefix)
	if !ok {
		return false
	}
	p, _, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(p)
	if !ok || err != nil || pid <= 0 {
		return false
	}
	// ESRCH only: EPERM means the process exists.
	return unix.Kill(pid, 0) == unix.ESRCH
}

// RequireRoot skips t unless it runs as root with the ip command available.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testenv.Missing(t, "needs the ip command from iproute2 (.ci/run installs it)")
	}
}

// New creates a namespace with loopback up and deletes it when t ends.
// Extra addresses (CIDR notation, e.g. "10.0.0.1/32" or "fd00::1/128") are
// added to its loopback.
func New(t testing.TB, addrs ...string) *NS {
	t.Helper()
	RequireRoot(t)
	sweepOnce.Do(sweepDead)
	ns := &NS{Name: fmt.Sprintf("%s%d-%d", namePrefix, os.Getpid(), seq.Add(1))}
	// A UDP table of its own: other namespaces' sockets (other tests')
	// must not move a crowded port's answer.
	var out []byte
	err := netns.WithOwnUDPTable(func() (err error) {
		out, err = exec.Command("ip", "netns", "add", ns.Name).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns.Name, err, out)
		}
	})
	ns.IP(t, "link", "set", "lo", "up")
	for _, a := range addrs {
		args := []string{"addr", "add", a, "dev", "lo"}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		ns.IP(t, args...)
	}
	return ns
}

// IP runs `ip -n NAME args...` and fails t on error.
func (ns *NS) IP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// LinkLocalOn adds a veth pair dev and peer inside the namespace, both up,
// and addr (e.g. "fe80::1/64") on dev without duplicate address detection,
// so that it is usable at once: an address of link scope on one device of
// two.
func (ns *NS) LinkLocalOn(t testing.TB, dev, peer, addr string) {
	t.Helper()
	ns.IP(t, "link", "add", dev, "type", "veth", "peer", "name", peer)
	ns.IP(t, "link", "set", peer, "up")
	ns.IP(t, "link", "set", dev, "up")
	ns.IP(t, "addr", "add", addr, "dev", dev, "nodad")
}

// Command returns a command that runs inside the namespace.
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its standard output,
// failing t if it fails.
func (ns *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := ns.Command(context.Background(), name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s in %s: %v: %s", name, strings.Join(args, " "), ns.Name, err, stderr.String())
	}
	return string(out)
}

// Sysctl sets a sysctl inside the namespace, e.g. Sysctl(t,
// "net.ipv4.ip_local_port_range", "40000 40010").
func (ns *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	ns.Run(t, "sysctl", "-q", "-w", key+"="+value)
}

// Do runs fn on an OS thread that has entered the namespace. Sockets fn
// creates stay in the namespace for their whole life, whichever thread uses
// them later.
func (ns *NS) Do(fn func() error) error {
	return netns.Do("/run/netns/"+ns.Name, fn)
}

// DialN opens n connections inside ns, dial(i) making the i-th, and
// returns those that opened and the first error (it stops there). The
// connections are closed when t ends.
func (ns *NS) DialN(t testing.TB, n int, dial func(i int) (net.Conn, error)) ([]net.Conn, error) {
	t.Helper()
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	err := ns.Do(func() error {
		for i := range n {
			c, err := dial(i)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	return conns, err
}

// Counter returns counter name of group ("Icmp:", "TcpExt:") in
// /proc/net/FILE (snmp or netstat) inside the namespace, and whether this
// kernel counts it at all.
func (ns *NS) Counter(t testing.TB, file, group, name string) (int, bool) {
	t.Helper()
	n, found, err := counterIn(ns.Run(t, "cat", "/proc/net/"+file), group, name)
	if err != nil {
		t.Fatalf("/proc/net/%s in %s: %v", file, ns.Name, err)
	}
	return n, found
}
