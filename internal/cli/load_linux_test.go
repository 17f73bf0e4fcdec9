package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/load"
)

// loadNS is a namespace with a source, two destinations, a 10-port ephemeral
// range and a tuple load sink on 8080.
func loadNS(t *testing.T, bin string) (*netnstest.NS, *exec.Cmd, *bytes.Buffer) {
	t.Helper()
	ns := netnstest.New(t, "10.0.0.1/32", "10.0.1.1/32", "10.0.1.2/32")
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40009")
	sink := ns.Command(context.Background(), bin, "load", "--listen", "0.0.0.0:8080", "--hold", "60s", "--procs", "3", "--json")
	var out bytes.Buffer
	sink.Stdout = &out
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Process.Kill(); sink.Wait() })
	waitFor(t, "sink listening", func() bool {
		return strings.Count(ns.Run(t, "ss", "-Htln", "sport = :8080"), "LISTEN") == 3
	})
	return ns, sink, &out
}

// pids lists the processes in ns.
func pids(t *testing.T, ns *netnstest.NS) []string {
	out, err := exec.Command("ip", "netns", "pids", ns.Name).Output()
	if err != nil {
		t.Fatalf("ip netns pids: %v", err)
	}
	return strings.Fields(string(out))
}

// clientSockets lists the TCP sockets of the source address in ns.
func clientSockets(t *testing.T, ns *netnstest.NS) string {
	return strings.TrimSpace(ns.Run(t, "ss", "-Htan", "src 10.0.0.1"))
}

func decodeReport(t *testing.T, out []byte) load.Report {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(out, &fields); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	for _, f := range []string{"policy", "requested", "established", "errors", "rate_per_s", "p50_ms", "p99_ms", "local_ports"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("--json output lacks %q: %s", f, out)
		}
	}
	var r load.Report
	json.Unmarshal(out, &r)
	return r
}

// tuple load -u with each policy in a namespace with a 10-port range and
// two destinations, no sink: a UDP port is never shared across
// destinations, with IP_BIND_ADDRESS_NO_PORT neither (10 at most, where TCP
// holds 20), while SO_REUSEPORT on one port connects every socket, to the
// same destination too. Nothing is left behind afterwards.
func TestLoadUDPEndToEnd(t *testing.T) {
	netnstest.RequireRoot(t)
	bin := tupleBinary(t)
	ns := netnstest.New(t, "10.0.0.1/32", "10.0.1.1/32", "10.0.1.2/32")
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40009")
	for _, tc := range []struct {
		policy, from string
		connected    int
		errno        string
		localPorts   int
	}{
		{"kernel", "", 10, "EAGAIN", 10},
		{"bind", "10.0.0.1", 10, "EADDRINUSE", 10},
		{"shared", "10.0.0.1", 10, "EAGAIN", 10},
		{"fixed:5000", "10.0.0.1", 30, "", 1},
		{"range:40004-40004", "10.0.0.1", 1, "EAGAIN", 1},
	} {
		args := []string{"load", "-u", "--to", "10.0.1.1:8080,10.0.1.2:8080", "--conns", "30", "--policy", tc.policy,
			"--hold", "100ms", "--per-proc", "12", "--stop-after", "3", "--json"}
		if tc.from != "" {
			args = append(args, "--from", tc.from)
		}
		out, err := ns.Command(context.Background(), bin, args...).Output()
		if err != nil {
			t.Fatalf("tuple %s: %v", strings.Join(args, " "), err)
		}
		r := decodeReport(t, out)
		if r.Proto != "udp" || r.Established != tc.connected || r.LocalPorts != tc.localPorts {
			t.Errorf("%s: %s, %d connected with %d local ports, want udp, %d with %d",
				tc.policy, r.Proto, r.Established, r.LocalPorts, tc.connected, tc.localPorts)
		}
		if (tc.errno == "" && len(r.Errors) != 0) || (tc.errno != "" && (r.Errors[tc.errno] == 0 || len(r.Errors) != 1)) {
			t.Errorf("%s: errors %v, want only %q", tc.policy, r.Errors, tc.errno)
		}
		if got := strings.TrimSpace(ns.Run(t, "ss", "-Huan")); got != "" {
			t.Errorf("%s: sockets left after tuple load -u ended:\n%s", tc.policy, got)
		}
	}
}

// tuple load with each policy in a namespace with a 10-port range and two
// destinations: shared holds 20 at once, bind stops at 10, and nothing is
// left behind afterwards.
func TestLoadEndToEnd(t *testing.T) {
	netnstest.RequireRoot(t)
	bin := tupleBinary(t)
	ns, sink, sinkOut := loadNS(t, bin)
	for _, tc := range []struct {
		policy, from     string
		established      int
		errno            string
		localPorts       int
		wantGiveUpOrLess bool
	}{
		{"shared", "10.0.0.1", 20, "EADDRNOTAVAIL", 10, false},
		{"bind", "10.0.0.1", 10, "EADDRINUSE", 10, true},
		{"kernel", "", 20, "EADDRNOTAVAIL", 10, false},
		{"fixed:5000", "10.0.0.1", 2, "EADDRNOTAVAIL", 1, true},
		{"range:40004-40004", "10.0.0.1", 2, "EADDRNOTAVAIL", 1, true},
	} {
		args := []string{"load", "--to", "10.0.1.1:8080,10.0.1.2:8080", "--conns", "30", "--policy", tc.policy,
			"--hold", "300ms", "--per-proc", "12", "--stop-after", "3", "--json"}
		if tc.from != "" {
			args = append(args, "--from", tc.from)
		}
		cmd := ns.Command(context.Background(), bin, args...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tuple %s: %v", strings.Join(args, " "), err)
		}
		r := decodeReport(t, out)
		if r.Policy != tc.policy || r.Requested != 30 || r.Workers != 3 {
			t.Errorf("%s: policy %q requested %d workers %d, want %s 30 3", tc.policy, r.Policy, r.Requested, r.Workers, tc.policy)
		}
		if r.Established != tc.established || r.LocalPorts != tc.localPorts {
			t.Errorf("%s: established %d with %d local ports, want %d with %d", tc.policy, r.Established, r.LocalPorts, tc.established, tc.localPorts)
		}
		if r.Errors[tc.errno] == 0 || len(r.Errors) != 1 {
			t.Errorf("%s: errors %v, want only %s", tc.policy, r.Errors, tc.errno)
		}
		if r.RatePerS <= 0 || r.P50ms <= 0 || r.P99ms < r.P50ms {
			t.Errorf("%s: rate %v p50 %v p99 %v, want positive and p50 <= p99", tc.policy, r.RatePerS, r.P50ms, r.P99ms)
		}
		if got := clientSockets(t, ns); got != "" {
			t.Errorf("%s: sockets left after tuple load ended:\n%s", tc.policy, got)
		}
	}
	// The sink let go of the connections the clients closed: its
	// processes hold just their three listening sockets.
	waitFor(t, "the sink to close finished connections", func() bool { return socketFDs(t, ns) == 3 })
	// The sink stops on SIGINT, reports, and leaves nothing.
	sink.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- sink.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("sink after SIGINT: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sink did not stop within 10s of SIGINT")
	}
	var sr load.SinkReport
	if err := json.Unmarshal(sinkOut.Bytes(), &sr); err != nil {
		t.Fatalf("sink output %q: %v", sinkOut, err)
	}
	if want := 20 + 10 + 20 + 2 + 2; sr.Accepted != want || len(sr.PerProc) != 3 {
		t.Errorf("sink accepted %d over %v, want %d over 3 processes", sr.Accepted, sr.PerProc, want)
	}
	if p := pids(t, ns); len(p) != 0 {
		t.Errorf("processes left in the namespace: %v", p)
	}
	if s := strings.TrimSpace(ns.Run(t, "ss", "-Htan")); s != "" {
		t.Errorf("sockets left in the namespace:\n%s", s)
	}
}

// Interrupting tuple load (SIGINT while it holds) or killing it (SIGKILL)
// leaves no worker and no socket.
func TestLoadInterruptedLeavesNothing(t *testing.T) {
	netnstest.RequireRoot(t)
	bin := tupleBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		ns, sink, _ := loadNS(t, bin)
		cmd := ns.Command(context.Background(), bin, "load", "--from", "10.0.0.1", "--to", "10.0.1.1:8080,10.0.1.2:8080",
			"--conns", "20", "--per-proc", "7", "--hold", "60s", "--json")
		if r := startHolding(t, cmd); r.Established != 20 {
			t.Errorf("established %d, want 20", r.Established)
		}
		if n := len(pids(t, ns)); n != 1+3+1+3 { // sink + 3 workers, load + 3 workers
			t.Errorf("%d processes in the namespace while holding, want 8", n)
		}
		start := time.Now()
		cmd.Process.Signal(sig)
		cmd.Wait()
		sink.Process.Signal(syscall.SIGTERM)
		sink.Wait()
		waitFor(t, "workers to exit after "+sig.String(), func() bool { return len(pids(t, ns)) == 0 })
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%v: took %v to clean up", sig, took)
		}
		waitFor(t, "sockets to go after "+sig.String(), func() bool { return clientSockets(t, ns) == "" })
	}
}

// SIGINT while connects are still pending (the destination's accept queue
// is full, so SYNs go unanswered) stops tuple load at once with a partial
// report, exit 1 and nothing left.
func TestLoadInterruptedWhileOpening(t *testing.T) {
	netnstest.RequireRoot(t)
	bin := tupleBinary(t)
	ns := netnstest.New(t, "10.0.0.1/32", "10.0.1.1/32")
	// A listener that never accepts, with the smallest queue.
	var fd int
	if err := ns.Do(func() (err error) {
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0); err != nil {
			return err
		}
		if err = unix.Bind(fd, &unix.SockaddrInet4{Port: 8080, Addr: [4]byte{10, 0, 1, 1}}); err != nil {
			return err
		}
		return unix.Listen(fd, 0)
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cmd := ns.Command(context.Background(), bin, "load", "--from", "10.0.0.1", "--to", "10.0.1.1:8080",
		"--conns", "20", "--per-proc", "10", "--timeout", "60s", "--hold", "60s", "--json")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pending connects", func() bool {
		return strings.Count(ns.Run(t, "ss", "-Htan", "state", "syn-sent"), "\n") >= 10
	})
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v to stop after SIGINT", took)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit after SIGINT while opening: %v, want exit status 1", err)
	}
	r := decodeReport(t, out.Bytes())
	if !r.Interrupted || r.Established >= 20 {
		t.Errorf("report after SIGINT: interrupted %v, established %d; want a partial report", r.Interrupted, r.Established)
	}
	waitFor(t, "workers to exit", func() bool { return len(pids(t, ns)) == 0 })
	waitFor(t, "client sockets to go", func() bool { return clientSockets(t, ns) == "" })
}

// socketFDs counts the socket descriptors of the processes in ns.
func socketFDs(t *testing.T, ns *netnstest.NS) int {
	n := 0
	for _, pid := range pids(t, ns) {
		ents, _ := os.ReadDir("/proc/" + pid + "/fd")
		for _, e := range ents {
			if l, err := os.Readlink("/proc/" + pid + "/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
				n++
			}
		}
	}
	return n
}

// finServer accepts on addr inside ns and closes each connection in turn
// once its peer has closed (a FIN or a reset), as ordinary servers do; it
// reports each close on the returned channel.
func finServer(t *testing.T, ns *netnstest.NS, addr string) <-chan struct{} {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{}, 1024)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(io.Discard, c)
				c.Close()
				closed <- struct{}{}
			}()
		}
	}()
	return closed
}

// SIGKILL of tuple load while it holds connections to a server that
// closes in turn leaves no TIME_WAIT: the workers' sockets carry
// SO_LINGER 0 from their creation, so the kernel's close at their death
// is a reset. (Before, each connection closed with a FIN and sat in
// TIME_WAIT for 60 s: 20,059 of them after holding 20,000.)
func TestLoadKilledLeavesNoTimeWait(t *testing.T) {
	netnstest.RequireRoot(t)
	bin := tupleBinary(t)
	ns := netnstest.New(t, "10.0.0.1/32", "10.0.1.1/32")
	closed := finServer(t, ns, "10.0.1.1:8080")
	cmd := ns.Command(context.Background(), bin, "load", "--from", "10.0.0.1", "--to", "10.0.1.1:8080",
		"--conns", "20", "--per-proc", "10", "--hold", "60s", "--json")
	if r := startHolding(t, cmd); r.Established != 20 {
		t.Fatalf("established %d, want 20", r.Established)
	}
	cmd.Process.Kill()
	cmd.Wait()
	// The server has closed every connection once it saw each end.
	for i := range 20 {
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("the server saw %d of 20 connections end within 10s of SIGKILL", i)
		}
	}
	waitFor(t, "the workers to exit", func() bool { return len(pids(t, ns)) == 0 })
	if s := clientSockets(t, ns); s != "" {
		t.Errorf("client sockets left after SIGKILL:\n%s", s)
	}
}

// openFDs counts the descriptors of process pid.
func openFDs(pid string) int {
	ents, _ := os.ReadDir("/proc/" + pid + "/fd")
	return len(ents)
}

// underLimit runs tuple with args in ns under a file limit of n.
func underLimit(ns *netnstest.NS, n int, bin string, args ...string) *exec.Cmd {
	return ns.Command(context.Background(), "sh", append([]string{"-c", `ulimit -n "$0" && exec "$@"`, strconv.Itoa(n), bin}, args...)...)
}

// Under a file limit of 100, the default --per-proc follows the limit, so
// 300 connections are all opened (before: one worker of 15,000 stopped at
// 92 with "errno 24" and exit 0). A sink process that reaches its limit of
// 64 says so, names EMFILE and the limit, and exits 1 (before: exit 0, the
// short count silent).
func TestLoadFileLimit(t *testing.T) {
	netnstest.RequireRoot(t)
	bin := tupleBinary(t)
	ns := netnstest.New(t, "10.0.0.1/32", "10.0.1.1/32")
	finServer(t, ns, "10.0.1.1:8080")
	out, err := underLimit(ns, 100, bin, "load", "--from", "10.0.0.1", "--to", "10.0.1.1:8080",
		"--conns", "300", "--hold", "10ms", "--json").Output()
	if err != nil {
		t.Fatalf("tuple load under ulimit -n 100: %v", err)
	}
	if r := decodeReport(t, out); r.Established != 300 || len(r.Errors) != 0 || r.Workers != 5 {
		t.Errorf("under ulimit -n 100: %d of 300 established by %d workers, errors %v; want 300 by 5 (100 less 32 is 68 each), none", r.Established, r.Workers, r.Errors)
	}

	sink := underLimit(ns, 64, bin, "load", "--listen", "10.0.1.1:9090", "--procs", "1", "--hold", "60s", "--json")
	var sinkOut, sinkErr bytes.Buffer
	sink.Stdout, sink.Stderr = &sinkOut, &sinkErr
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Process.Kill(); sink.Wait() })
	waitFor(t, "the sink listening", func() bool { return strings.Contains(ns.Run(t, "ss", "-Htln", "sport = :9090"), "LISTEN") })
	client := ns.Command(context.Background(), bin, "load", "--from", "10.0.0.1", "--to", "10.0.1.1:9090",
		"--conns", "100", "--hold", "60s", "--json")
	stdout, err := client.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Process.Kill(); client.Wait() })
	if _, err := bufio.NewReader(stdout).ReadBytes('\n'); err != nil { // all 100 handshakes done
		t.Fatalf("reading the client's report: %v", err)
	}
	// The sink's worker is full when it holds 64 descriptors (numbered
	// below the limit; one it was given may be above) and the rest of the
	// connections wait in its accept queue.
	worker := ""
	waitFor(t, "the sink worker to reach its 64 descriptors", func() bool {
		for _, pid := range pids(t, ns) {
			if cl, _ := os.ReadFile("/proc/" + pid + "/cmdline"); strings.Contains(string(cl), `"sink":true`) {
				worker = pid
			}
		}
		return worker != "" && openFDs(worker) >= 64
	})
	sink.Process.Signal(syscall.SIGINT)
	err = sink.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("sink that reached its file limit: %v, want exit status 1", err)
	}
	for _, want := range []string{"RLIMIT_NOFILE 64", "EMFILE", "ulimit -n"} {
		if !strings.Contains(sinkErr.String(), want) {
			t.Errorf("sink's stderr lacks %q:\n%s", want, sinkErr.String())
		}
	}
	var sr load.SinkReport
	if err := json.Unmarshal(sinkOut.Bytes(), &sr); err != nil || sr.Errors["EMFILE"] == 0 || sr.Accepted >= 100 {
		t.Errorf("sink report %s (%v): want EMFILE counted and fewer than 100 accepted", sinkOut.String(), err)
	}
	if !regexp.MustCompile(`holding (5|6)\d connections`).MatchString(sinkErr.String()) {
		t.Errorf("sink's stderr does not say how many connections it held at the limit (50-69):\n%s", sinkErr.String())
	}
}

// startHolding starts a tuple load run with --json and returns its report,
// printed once every connection is open and the hold begins.
func startHolding(t *testing.T, cmd *exec.Cmd) load.Report {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading the report: %v", err)
	}
	return decodeReport(t, line)
}

// A sink on a port another program listens on: its SO_REUSEPORT listeners
// joined that program's group and took its connections without a word.
func TestLoadSinkRefusesATakenPort(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32")
	listenIn(t, ns, "10.0.0.1:8080")
	code, _, errOut := runIn(t, ns, "load", "--listen", "10.0.0.1:8080", "--hold", "1s")
	if code != 1 || !strings.Contains(errOut, "already listens on 10.0.0.1:8080") {
		t.Errorf("load --listen on a taken port: exit %d, stderr %q; want 1 and the listener named", code, errOut)
	}
}
