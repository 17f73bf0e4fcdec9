package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNetcatBadInputExits2(t *testing.T) {
	for _, args := range [][]string{
		{"connect"},
		{"connect", "127.0.0.1"},
		{"connect", "127.0.0.1", "80", "extra"},
		{"connect", "", "80"},
		{"connect", "127.0.0.1", "0"},
		{"connect", "127.0.0.1", "70000"},
		{"connect", "127.0.0.1", "no-such-service-x"},
		{"connect", "127.0.0.1", "8 0"},
		{"connect", "127.0.0.1", "20-30"},
		{"connect", "-p", "0", "127.0.0.1", "80"},
		{"connect", "-p", "99999", "127.0.0.1", "80"},
		{"connect", "-p", "1/2", "127.0.0.1", "80"},
		{"connect", "-s", "bogus", "127.0.0.1", "80"},
		{"connect", "-s", "::1", "127.0.0.1", "80"},
		{"connect", "-4", "-6", "127.0.0.1", "80"},
		{"connect", "-4", "::1", "80"},
		{"connect", "-6", "-s", "127.0.0.1", "::1", "80"},
		{"connect", "-w", "soon", "127.0.0.1", "80"},
		{"connect", "-w", "0", "127.0.0.1", "80"},
		{"connect", "-w", "-1", "127.0.0.1", "80"},
		{"connect", "-z", "127.0.0.1", "30-20"},
		{"connect", "-z", "127.0.0.1", "0-5"},
		{"connect", "-z", "-u", "127.0.0.1", "30-20"},
		{"connect", "--port-range", "5-3", "127.0.0.1", "80"},
		{"connect", "--port-range", "1000-2000", "-p", "5000", "127.0.0.1", "80"},
		{"connect", "--bind-no-port", "-s", "127.0.0.1", "-p", "5", "127.0.0.1", "80"},
		{"connect", "--bind-no-port", "127.0.0.1", "80"},
		{"connect", "--no-such-flag", "127.0.0.1", "80"},
		{"connect", "-x", "127.0.0.1", "80"},
		{"listen"},
		{"listen", "a", "b", "c"},
		{"listen", "99999"},
		{"listen", "127.0.0.1", "-5"},
		{"listen", "-u", "-e", "cat", "8080"},
		{"listen", "-u", "-k", "8080"},
		{"listen", "--broadcast", "8080"},
		{"listen", "-k", "--broadcast", "-e", "cat", "8080"},
		{"listen", "-4", "::1", "8080"},
		{"listen", "-4", "-6", "8080"},
		{"listen", "", "8080"},
		{"listen", "-e"},
		{"listen", "--reuseport=maybe", "8080"},
	} {
		code, out, errOut := run(t, "", args...)
		if code != 2 {
			t.Errorf("tuple %q: exit %d, want 2; stderr %q", args, code, errOut)
			continue
		}
		if out != "" || !strings.HasPrefix(errOut, "tuple: ") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("tuple %q: want one error line on stderr, got stdout %q stderr %q", args, out, errOut)
		}
	}
}

// Fuzz the whole of connect's flag and argument checking: any input gives a
// plan or a one-line error, never a panic.
func FuzzConnectPlan(f *testing.F) {
	f.Add("10.0.0.2", "80", "10.0.0.1", "12345", "5", "", false, false)
	f.Add("::1", "20-30", "", "", "500ms", "40000-40100", true, true)
	f.Add("[fe80::1%lo]", "http", "::", "0", "", "1-", false, true)
	f.Fuzz(func(t *testing.T, host, port, src, sport, timeout, prange string, scan, v6 bool) {
		o := &connectOptions{sourceAddr: src, sourcePort: sport, timeout: timeout, portRange: prange, scan: scan, v6: v6, reusePort: true}
		p, err := o.plan(host, port)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		for _, r := range p.ports {
			if r.Lo == 0 || r.Lo > r.Hi || (!scan && r.Lo != r.Hi) {
				t.Fatalf("plan has ports %v", p.ports)
			}
		}
		if len(p.ports) != 1 {
			t.Fatalf("plan has %d port arguments from one", len(p.ports))
		}
		if p.bind && !p.local.Addr().IsValid() {
			t.Fatalf("bind without an address: %v", p.local)
		}
	})
}

func opErr(call string, errno syscall.Errno, local, remote string) error {
	e := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError(call, errno)}
	if local != "" {
		e.Source = net.TCPAddrFromAddrPort(netip.MustParseAddrPort(local))
	}
	if remote != "" {
		e.Addr = net.TCPAddrFromAddrPort(netip.MustParseAddrPort(remote))
	}
	return e
}

func TestNetFailureReport(t *testing.T) {
	// The report's own lines; the explanation from the live host is
	// tested in TestExplainNetFailure.
	saved := explainFailure
	explainFailure = nil
	defer func() { explainFailure = saved }()
	local := netip.MustParseAddrPort("10.0.0.1:12345")
	remote := netip.MustParseAddrPort("10.0.0.3:80")
	for _, tc := range []struct {
		name    string
		op, net string
		err     error
		line    string
	}{
		{"bind in use", "connect", "tcp", opErr("bind", syscall.EADDRINUSE, "10.0.0.1:12345", "10.0.0.3:80"),
			"tuple: connect tcp 10.0.0.1:12345 -> 10.0.0.3:80: bind: address already in use (EADDRINUSE)"},
		{"four-tuple taken", "connect", "tcp", opErr("connect", syscall.EADDRNOTAVAIL, "10.0.0.1:12345", "10.0.0.3:80"),
			"tuple: connect tcp 10.0.0.1:12345 -> 10.0.0.3:80: connect: cannot assign requested address (EADDRNOTAVAIL)"},
		{"refused", "connect", "tcp", opErr("connect", syscall.ECONNREFUSED, "", "10.0.0.3:80"),
			"tuple: connect tcp 10.0.0.1:12345 -> 10.0.0.3:80: connect: connection refused (ECONNREFUSED)"},
		{"listen in use", "listen", "tcp", opErr("bind", syscall.EADDRINUSE, "", "10.0.0.1:12345"),
			"tuple: listen tcp 10.0.0.1:12345: bind: address already in use (EADDRINUSE)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			f := newNetFailure(tc.op, tc.net, local, remote, tc.err)
			if tc.op == "listen" {
				f = newNetFailure(tc.op, tc.net, netip.AddrPort{}, netip.AddrPort{}, tc.err)
			}
			f.report(&b, false)
			err := reportNetFailure(&b, f)
			lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			if len(lines) != 2 || lines[0] != tc.line || !strings.HasPrefix(lines[1], "hint: ") {
				t.Fatalf("report %q, want the line %q and a hint", b.String(), tc.line)
			}
			golden(t, "netfailure-hint-"+strings.ReplaceAll(tc.name, " ", "-")+".txt", lines[1]+"\n")
			var errno syscall.Errno
			if !errors.As(err, &errno) || !errors.As(tc.err, new(*net.OpError)) {
				t.Errorf("returned error %v does not wrap the errno", err)
			}
		})
	}
}

// A command without listen's socket flags (tuple exporter) gets a hint
// that names none.
func TestNetFailureHintWithoutFlags(t *testing.T) {
	saved := explainFailure
	explainFailure = nil
	defer func() { explainFailure = saved }()
	f := newNetFailure("listen", "tcp", netip.AddrPort{}, netip.AddrPort{}, opErr("bind", syscall.EADDRINUSE, "", "127.0.0.1:9779"))
	f.noFlags = true
	var b strings.Builder
	f.report(&b, false)
	if !strings.Contains(b.String(), "\nhint: another socket holds port 9779") || strings.Contains(b.String(), "--") || strings.Contains(b.String(), "-v") {
		t.Errorf("report of a command without socket flags: %q, want a hint naming no flag", b.String())
	}
}

func TestExplainFailureHook(t *testing.T) {
	type call struct {
		op, network   string
		local, remote netip.AddrPort
	}
	var got []call
	saved := explainFailure
	explainFailure = func(ctx context.Context, f *netFailure) (*failureExplanation, error) {
		got = append(got, call{f.op, f.network, f.local, f.remote})
		if !errors.Is(f.err, syscall.EADDRINUSE) {
			return nil, errors.New("the model predicts ok")
		}
		return &failureExplanation{brief: "socket X blocks it", full: "why: socket X holds it\n"}, nil
	}
	defer func() { explainFailure = saved }()
	var b strings.Builder
	f := newNetFailure("connect", "tcp", netip.MustParseAddrPort("10.0.0.1:12345"),
		netip.AddrPort{}, opErr("bind", syscall.EADDRINUSE, "10.0.0.1:12345", "10.0.0.3:80"))
	// Without -v: nc's line and the model's explanation in one hint line
	// that points at -v.
	f.report(&b, false)
	if lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n"); len(lines) != 2 || lines[1] != "hint: socket X blocks it; -v explains it in full" {
		t.Errorf("report without -v: %q, want two lines, the hint the model's", b.String())
	}
	got = nil
	b.Reset()
	f.report(&b, true)
	err := reportNetFailure(&b, f)
	if !strings.HasSuffix(b.String(), "\nwhy: socket X holds it\n") || strings.Count(b.String(), "\n") != 3 {
		t.Errorf("report with explanation: %q", b.String())
	}
	want := call{"connect", "tcp", netip.MustParseAddrPort("10.0.0.1:12345"), netip.MustParseAddrPort("10.0.0.3:80")}
	if len(got) != 1 || got[0] != want {
		t.Errorf("hook called with %+v, want %+v", got, want)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %v does not wrap EADDRINUSE", err)
	}
	// A failure the model cannot explain says why, not nothing.
	b.Reset()
	newNetFailure("connect", "tcp", netip.MustParseAddrPort("10.0.0.1:12345"), netip.AddrPort{},
		opErr("connect", syscall.EADDRNOTAVAIL, "10.0.0.1:12345", "10.0.0.3:80")).report(&b, true)
	if !strings.HasSuffix(b.String(), "\nno explanation from this host's sockets: the model predicts ok\n") {
		t.Errorf("report without an explanation: %q", b.String())
	}
	// Without -v, reading the host may take hintBudget, no more: past it
	// the hint is the errno's and points at -v, which waits for it.
	explainFailure = func(ctx context.Context, f *netFailure) (*failureExplanation, error) {
		if _, ok := ctx.Deadline(); !ok {
			return &failureExplanation{brief: "socket X blocks it", full: "why: socket X holds it\n"}, nil
		}
		<-ctx.Done()
		return nil, fmt.Errorf("socket table: %w", ctx.Err())
	}
	savedBudget := hintBudget
	hintBudget = time.Millisecond
	defer func() { hintBudget = savedBudget }()
	b.Reset()
	f.report(&b, false)
	if lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "hint: another socket holds port 12345") || !strings.HasSuffix(lines[1], "; -v explains it from this host's sockets") {
		t.Errorf("report without -v past the budget: %q, want the errno's hint pointing at -v", b.String())
	}
	b.Reset()
	f.report(&b, true)
	if !strings.HasSuffix(b.String(), "\nwhy: socket X holds it\n") {
		t.Errorf("report with -v: %q, want the explanation however long it takes", b.String())
	}
	explainFailure = func(ctx context.Context, f *netFailure) (*failureExplanation, error) {
		return nil, errors.New("the model predicts ok")
	}
	// Without -v, a failure the model cannot explain gets the errno's
	// hint, which points at nothing more.
	b.Reset()
	newNetFailure("connect", "tcp", netip.MustParseAddrPort("10.0.0.1:12345"), netip.AddrPort{},
		opErr("connect", syscall.EADDRNOTAVAIL, "10.0.0.1:12345", "10.0.0.3:80")).report(&b, false)
	if lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n"); len(lines) != 2 || strings.Contains(lines[1], "-v") {
		t.Errorf("report without -v nor an explanation: %q", b.String())
	}
}

// On loopback, without root: connect and listen in this process relay
// bytes both ways and report failures with exit 1.
func TestConnectAndListenOnLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c) // ends at tuple's half-close
		c.Write(append([]byte("got "), b...))
		c.Close()
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	code, out, errOut := run(t, "ping", "connect", "-v", "127.0.0.1", strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:"))
	connected := regexp.MustCompile(fmt.Sprintf(`^connected 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:%d \(tcp\)\n$`, port))
	if code != 0 || out != "got ping" || !connected.MatchString(errOut) {
		t.Errorf("connect: exit %d, out %q, err %q; want the four-tuple line %s", code, out, errOut, connected)
	}
	ln.Close()
	// Nothing listens there now.
	code, _, errOut = run(t, "", "connect", "127.0.0.1", strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:"))
	want := fmt.Sprintf("tuple: connect tcp *:* -> 127.0.0.1:%d: connect: connection refused (ECONNREFUSED)\n"+
		"hint: nothing listens on 127.0.0.1:%d (the host answered with a reset or port unreachable)\n", port, port)
	if code != 1 || errOut != want {
		t.Errorf("connect to a closed port: exit %d, stderr (-want +got):\n%s", code, cmp.Diff(want, errOut))
	}
	// A listener on a port in use fails with the hint.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, busyPort, _ := net.SplitHostPort(busy.Addr().String())
	code, _, errOut = run(t, "", "listen", "127.0.0.1", busyPort)
	// The hint's words depend on what this user may read of the holder
	// (TestExplainNetFailure has them); it names the port either way.
	want = "tuple: listen tcp 127.0.0.1:" + busyPort + ": bind: address already in use (EADDRINUSE)"
	lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
	if code != 1 || len(lines) != 2 || lines[0] != want || !strings.HasPrefix(lines[1], "hint: ") || !strings.Contains(lines[1], ":"+busyPort) {
		t.Errorf("listen on a busy port: exit %d, stderr %q; want the line %q and a hint naming the port", code, errOut, want)
	}
}

// listen -p 8702 8703 read 8703 as the address and failed to resolve it.
func TestListenPortGivenTwice(t *testing.T) {
	wantBadInput(t, "the port is given twice, -p 8702 and 8703", "listen", "-p", "8702", "8703")
	wantBadInput(t, "ADDR 8080 is a number, not an address: want [ADDR] PORT", "listen", "8080", "9090")
}

// connect -6 NAME where NAME has IPv4 addresses only: bad input (exit 2)
// said in words, where Go's "address localhost: no suitable address found"
// exited 1 (or named the source address).
func TestNoAddressOfTheFamily(t *testing.T) {
	err := &net.OpError{Op: "dial", Net: "tcp6", Err: &net.AddrError{Err: "no suitable address found", Addr: "localhost"}}
	f := newNetFailure("connect", "tcp", netip.AddrPort{}, netip.AddrPort{}, err)
	f.target = "localhost:80"
	var ee *exitError
	if !errors.As(reportNetFailure(io.Discard, f), &ee) || ee.code != exitUsage {
		t.Errorf("exit code: %+v, want %d", ee, exitUsage)
	}
	if got, want := f.Error(), "connect tcp *:* -> localhost:80: the name has no address of the family asked for (-4, -6, or the source address's)"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

func TestCheckHostName(t *testing.T) {
	for _, ok := range []string{"localhost", "localhost.", "db-1.example.com", "1e100.net", "host_2.local"} {
		if err := checkHostName("HOST", ok); err != nil {
			t.Errorf("checkHostName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "-x", ".example", "999.1.1.1", "10.0.0.1.", "80", "[::1", "::1]", "a:b", "fe80::1%eth0", "a b", "127.0.0.1:80"} {
		if err := checkHostName("HOST", bad); err == nil {
			t.Errorf("checkHostName(%q) accepted", bad)
		}
	}
}
