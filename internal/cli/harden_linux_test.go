package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/internal/testenv"
)

// listenIn opens TCP listeners on addrs inside ns, closed when t ends.
func listenIn(t *testing.T, ns *netnstest.NS, addrs ...string) []net.Listener {
	t.Helper()
	var lns []net.Listener
	err := ns.Do(func() error {
		for _, a := range addrs {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				return err
			}
			t.Cleanup(func() { ln.Close() })
			lns = append(lns, ln)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lns
}

// dialMany opens n TCP connections to addr from inside ns.
func dialMany(t *testing.T, ns *netnstest.NS, addr string, n int) []net.Conn {
	t.Helper()
	conns, err := ns.DialN(t, n, func(int) (net.Conn, error) {
		return net.DialTimeout("tcp", addr, 5*time.Second)
	})
	if err != nil {
		t.Fatal(err)
	}
	return conns
}

// readAll reads every connection to its end (or deadline) concurrently and
// returns what each received.
func readAll(conns []net.Conn, deadline time.Duration) []string {
	got := make([]string, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(deadline))
			b, _ := io.ReadAll(c)
			got[i] = string(b)
		})
	}
	wg.Wait()
	return got
}

// listenUnderNproc runs `tuple listen -k ARGS` as uid 61234 with
// RLIMIT_NPROC nproc inside ns. The limit counts every task of the uid on
// the kernel, so the uid is one no other test of this suite runs as (the
// broker's tests, running beside these, use 65534); two suites sharing one
// kernel would share the count again.
func listenUnderNproc(t *testing.T, ns *netnstest.NS, nproc int, args ...string) *proc {
	t.Helper()
	for _, tool := range []string{"prlimit", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" (util-linux) not installed")
		}
	}
	lim := fmt.Sprintf("--nproc=%d:%d", nproc, nproc)
	full := append([]string{lim, "setpriv", "--reuid=61234", "--regid=61234", "--clear-groups", tupleBin, "listen", "-k"}, args...)
	return startIn(t, ns, false, "prlimit", full...).run(nil)
}

// Regression: a listen -k -e server with more clients than the kernel lets
// it have processes aborted (Go's runtime could not create a thread, exit 2)
// and orphaned its children. With an explicit --max-conns above the process
// limit, the connections the kernel refuses a process for are closed and
// logged, and the server goes on serving.
func TestListenExecSurvivesProcessLimit(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t)
	srv := listenUnderNproc(t, ns, 40, "--max-conns", "500", "-e", "echo hi; exec sleep 2", "127.0.0.1", "7000")
	waitListening(t, ns, "7000")
	conns := dialMany(t, ns, "127.0.0.1:7000", 120)
	got := readAll(conns, 20*time.Second)
	select {
	case <-srv.done:
		t.Fatalf("server exited (%v) under the process limit; stderr: %.2000s", srv.err, srv.stderr.String())
	default:
	}
	served := 0
	for _, g := range got {
		if g == "hi\n" {
			served++
		}
	}
	if served == 0 || served == len(conns) {
		t.Fatalf("%d of %d clients served; want the process limit to refuse some", served, len(conns))
	}
	// The errno text comes from the kernel: the line's shape is the test.
	if !regexp.MustCompile(`(?m)^tuple: refused 127\.0\.0\.1:7000 <- 127\.0\.0\.1:\d+: -e ".*": .+$`).MatchString(srv.stderr.String()) {
		t.Errorf("refusals not logged; stderr: %.2000s", srv.stderr.String())
	}
	// Once the children are gone, the server serves again.
	server := strconv.Itoa(srv.cmd.Process.Pid)
	waitFor(t, "the server's children to end", func() bool {
		return slices.Equal(pids(t, ns), []string{server})
	})
	again := readAll(dialMany(t, ns, "127.0.0.1:7000", 1), 10*time.Second)
	if again[0] != "hi\n" {
		t.Errorf("after the children ended, a client got %q; stderr: %.2000s", again[0], srv.stderr.String())
	}
	t.Logf("%d of %d clients served with --max-conns 500 under RLIMIT_NPROC 40", served, len(conns))
}

// With the default --max-conns (from RLIMIT_NPROC), the clients beyond the
// limit queue and every one of them is served in turn.
func TestListenExecDefaultMaxConnsQueues(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t)
	srv := listenUnderNproc(t, ns, 60, "-v", "-e", "echo hi; exec sleep 0.5", "127.0.0.1", "7000")
	srv.waitStderr("serving at most ")
	conns := dialMany(t, ns, "127.0.0.1:7000", 50)
	got := readAll(conns, 60*time.Second)
	for i, g := range got {
		if g != "hi\n" {
			t.Errorf("client %d got %q, want hi", i, g)
		}
	}
	if !regexp.MustCompile(`(?m)^tuple: \d+ connections live \(at most \d+: .+\); new ones wait in the accept queue$`).MatchString(srv.stderr.String()) {
		t.Errorf("the queueing is not logged; stderr: %.2000s", srv.stderr.String())
	}
	if t.Failed() {
		t.Logf("stderr: %.3000s", srv.stderr.String())
	}
}

// Regression: UDP datagrams over 32,768 bytes were cut to 32,768 without a
// word, both received by listen -u and as replies to connect -u.
func TestUDPLargeDatagramsIntact(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32", "fd00::1/128")
	for _, tc := range []struct {
		addr string
		size int
	}{{"10.0.0.1", 65507}, {"fd00::1", 65527}} {
		// listen -u receives a datagram of the largest payload.
		server := startIn(t, ns, true, "tuple", "listen", "-u", "-v", tc.addr, "9999").run(nil)
		server.waitStderr("listening on ")
		payload := bytes.Repeat([]byte("0123456789abcdef"), tc.size/16+1)[:tc.size]
		err := ns.Do(func() error {
			c, err := net.Dial("udp", net.JoinHostPort(tc.addr, "9999"))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write(payload)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, tc.size+10)
		server.outR.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := io.ReadAtLeast(server.outR, got, tc.size)
		if err != nil || !bytes.Equal(got[:n], payload) {
			t.Errorf("listen -u %s: got %d bytes (%v), want the %d-byte datagram intact", tc.addr, n, err, tc.size)
		}
		server.cmd.Process.Kill()
		<-server.done

		// connect -u prints a reply of the largest payload whole.
		var pc net.PacketConn
		if err := ns.Do(func() (err error) {
			pc, err = net.ListenPacket("udp", net.JoinHostPort(tc.addr, "9998"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		go func() {
			buf := make([]byte, 70000)
			_, from, err := pc.ReadFrom(buf)
			if err == nil {
				pc.WriteTo(payload, from)
			}
		}()
		client := startIn(t, ns, false, "tuple", "connect", "-u", "-w", "1", tc.addr, "9998").run(nil)
		client.stdin.Write([]byte("ping"))
		client.stdin.Close()
		if code := client.wait(10 * time.Second); code != 0 {
			t.Errorf("connect -u exited %d: %s", code, client.stderr.String())
		}
		pc.Close()
		if out := client.stdout.String(); out != string(payload) {
			t.Errorf("connect -u %s: printed %d bytes, want the %d-byte reply intact", tc.addr, len(out), tc.size)
		}
	}
}

// halfCloseServer accepts one connection in ns, half-closes at once (its
// answer is empty), then counts what the client sends until EOF.
func halfCloseServer(t *testing.T, ns *netnstest.NS, addr string) <-chan int {
	t.Helper()
	ln := listenIn(t, ns, addr)[0]
	got := make(chan int, 1)
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, _ := io.Copy(io.Discard, c)
		got <- int(n)
	}()
	return got
}

// Regression: when the peer half-closed first and stdin paused for more
// than a second, connect dropped the rest of stdin and exited 0. socat and
// nc -N deliver everything; so must tuple, with and without -N.
func TestConnectDeliversStdinAfterPeerHalfClose(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	clients := map[string][]string{
		"tuple":    {tupleBin, "connect", "10.0.0.1", "PORT"},
		"tuple -N": {tupleBin, "connect", "-N", "10.0.0.1", "PORT"},
		// socat's closing timeout (-t, 0.5 s by default) must outlast
		// the pause, or socat too stops reading stdin.
		"socat -t5": {"socat", "-t", "5", "-", "TCP:10.0.0.1:PORT"},
		"nc -N":     {"nc", "-N", "10.0.0.1", "PORT"},
		"tuple -q5": {tupleBin, "connect", "-q", "5", "10.0.0.1", "PORT"},
	}
	port := 7100
	for _, name := range []string{"tuple", "tuple -N", "tuple -q5", "socat -t5", "nc -N"} {
		argv := clients[name]
		if _, err := exec.LookPath(argv[0]); err != nil {
			testenv.Missing(t, argv[0]+" not installed")
		}
		port++
		for i := range argv {
			argv[i] = strings.ReplaceAll(argv[i], "PORT", fmt.Sprint(port))
		}
		got := halfCloseServer(t, ns, fmt.Sprintf("10.0.0.1:%d", port))
		c := startIn(t, ns, false, argv[0], argv[1:]...).run(nil)
		first, second := strings.Repeat("a", 1000), strings.Repeat("b", 1000)
		c.stdin.Write([]byte(first))
		time.Sleep(3 * time.Second) // well beyond the old one-second linger
		c.stdin.Write([]byte(second))
		c.stdin.Close()
		code := c.wait(15 * time.Second)
		if n := <-got; n != len(first)+len(second) || code != 0 {
			t.Errorf("%s: the server received %d bytes, exit %d; want %d and 0 (stderr %q)", name, n, code, len(first)+len(second), c.stderr.String())
		}
	}
}

// -q SECS ends the session that long after stdin ends although the peer
// never closes; without -q, connect waits for the peer.
func TestConnectQuitAfterStdinEOF(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	ln := listenIn(t, ns, "10.0.0.1:7200")[0]
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // never closed while the test runs
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	for _, q := range []string{"0", "1"} {
		c := startIn(t, ns, false, "tuple", "connect", "-q", q, "10.0.0.1", "7200").run(nil)
		c.stdin.Write([]byte("x"))
		start := time.Now()
		c.stdin.Close()
		if code := c.wait(10 * time.Second); code != 0 {
			t.Errorf("-q %s: exit %d: %s", q, code, c.stderr.String())
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("-q %s: ended %v after stdin", q, el)
		}
	}
	c := startIn(t, ns, false, "tuple", "connect", "10.0.0.1", "7200").run(nil)
	c.stdin.Close()
	select {
	case <-c.done:
		t.Errorf("without -q, connect ended before the peer closed: %v %s", c.err, c.stderr.String())
	case <-time.After(1500 * time.Millisecond):
	}
}

// Regression (IPv6 zones): who said nothing holds a link-local port a
// listener held, and connect -s fe80::2%v1 lost the zone (EINVAL). Two
// namespaces joined by a veth pair with link-local addresses.
func TestLinkLocalZones(t *testing.T) {
	needTuple(t)
	a, b := netnstest.New(t), netnstest.New(t)
	a.IP(t, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", b.Name)
	a.IP(t, "addr", "add", "fe80::1/64", "dev", "v0", "nodad")
	b.IP(t, "addr", "add", "fe80::2/64", "dev", "v1", "nodad")
	a.IP(t, "link", "set", "v0", "up")
	b.IP(t, "link", "set", "v1", "up")
	ln := listenIn(t, a, "[fe80::1%v0]:7300")[0]
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello\n"))
			c.Close()
		}
	}()

	// who reads every process's descriptors: slow on a busy host.
	who := startIn(t, a, false, "tuple", "who", "[fe80::1%v0]:7300").run(nil)
	if code := who.wait(60 * time.Second); code != 0 || !strings.Contains(who.stdout.String(), "tcp LISTEN [fe80::1]:7300") {
		t.Errorf("who [fe80::1%%v0]:7300: exit %d, %q; want the listener", code, who.stdout.String())
	}
	bad := startIn(t, a, false, "tuple", "who", "[fe80::1%nosuch]:7300").run(nil)
	if code := bad.wait(60 * time.Second); code != 2 {
		t.Errorf("who with an unknown zone: exit %d, want 2 (%s)", code, bad.stderr.String())
	}

	conn := startIn(t, b, false, "tuple", "connect", "-v", "-s", "fe80::2%v1", "fe80::1%v1", "7300").run(nil)
	conn.stdin.Close()
	if code := conn.wait(10 * time.Second); code != 0 || conn.stdout.String() != "hello\n" {
		t.Errorf("connect -s fe80::2%%v1 fe80::1%%v1: exit %d, out %q, err %q", code, conn.stdout.String(), conn.stderr.String())
	}
	if !regexp.MustCompile(`^connected \[fe80::2%v1\]:\d+ -> \[fe80::1%v1\]:7300 \(tcp\)\n$`).MatchString(conn.stderr.String()) {
		t.Errorf("the source lost its zone: %q", conn.stderr.String())
	}
	if _, err := exec.LookPath("socat"); err == nil {
		s := startIn(t, b, false, "socat", "-", "TCP6:[fe80::1%v1]:7300,bind=[fe80::2%v1]").run(nil)
		s.stdin.Close()
		if code := s.wait(10 * time.Second); code != 0 || s.stdout.String() != "hello\n" {
			t.Logf("socat, the anchor, with the same addresses: exit %d, %q %q", code, s.stdout.String(), s.stderr.String())
		}
	}
}

// Regression: `tuple listen 0.0.0.0 PORT` listened on [::]:PORT, both
// families. ADDR decides the family; :: follows net.ipv6.bindv6only.
func TestListenAddressFamily(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t)
	for _, tc := range []struct {
		args    []string
		sysctl  string
		v4, v6  bool
		comment string
	}{
		{[]string{"0.0.0.0", "8090"}, "0", true, false, "IPv4 only"},
		{[]string{"::", "8091"}, "0", true, true, "dual-stack as bindv6only=0 says"},
		{[]string{"::", "8092"}, "1", false, true, "IPv6 only as bindv6only=1 says"},
		{[]string{"-6", "8093"}, "0", false, true, "-6 unchanged"},
		{[]string{"-lvnp", "8094"}, "0", true, true, "nc habit: -l -v -n -p PORT"},
	} {
		ns.Sysctl(t, "net.ipv6.bindv6only", tc.sysctl)
		port := tc.args[len(tc.args)-1]
		srv := startIn(t, ns, false, "tuple", append([]string{"listen", "-k"}, tc.args...)...).run(nil)
		waitListening(t, ns, port)
		for _, fam := range []struct {
			addr string
			want bool
		}{{"127.0.0.1", tc.v4}, {"::1", tc.v6}} {
			err := ns.Do(func() error {
				c, err := net.DialTimeout("tcp", net.JoinHostPort(fam.addr, port), 2*time.Second)
				if err == nil {
					c.Close()
				}
				return err
			})
			if (err == nil) != fam.want {
				t.Errorf("listen %v (%s): connect to %s: %v, want reachable=%v", tc.args, tc.comment, fam.addr, err, fam.want)
			}
		}
		srv.cmd.Process.Kill()
		<-srv.done
	}
}

// Regression: writing into a closed pipe killed tuple with SIGPIPE (141),
// then printed "write /dev/stdout: broken pipe" and exited 1 (tuple ls -ap
// | head -1). A reader that leaves ends the command quietly, with 0.
func TestClosedStdoutPipeExitCode(t *testing.T) {
	needTuple(t)
	for _, args := range [][]string{{"version"}, {"ls", "-a"}, {"ls", "-a", "--json"}, {"lab", "--list"}, {"why", "bind", "127.0.0.1:80"}} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		cmd := exec.Command(tupleBin, args...)
		cmd.Stdout = w
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err = cmd.Run()
		w.Close()
		code := cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Errorf("tuple %v into a closed pipe: killed by %v", args, ws.Signal())
		} else if code != 0 || stderr.Len() > 0 {
			t.Errorf("tuple %v into a closed pipe: exit %d (%v), stderr %q; want 0 and nothing said", args, code, err, stderr.String())
		}
	}
}

// nc's scan habits: several ports and ranges after HOST.
func TestScanSeveralPortsAndRanges(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	listenIn(t, ns, "10.0.0.1:2", "10.0.0.1:5", "10.0.0.1:6000")
	scan := startIn(t, ns, false, "tuple", "connect", "-z", "-n", "10.0.0.1", "1-3", "5", "5999", "6000").run(nil)
	if code := scan.wait(20 * time.Second); code != 0 {
		t.Fatalf("scan exited %d: %s", code, scan.stderr.String())
	}
	want := "10.0.0.1 1/tcp closed (connection refused)\n10.0.0.1 2/tcp open\n10.0.0.1 3/tcp closed (connection refused)\n" +
		"10.0.0.1 5/tcp open\n10.0.0.1 5999/tcp closed (connection refused)\n10.0.0.1 6000/tcp open\n"
	if got := scan.stdout.String(); got != want {
		t.Errorf("scan printed\n%s\nwant\n%s", got, want)
	}
}

// Regression: 248 idle keep-alive connections exhausted the exporter's
// descriptors (RLIMIT_NOFILE 256) and every scrape timed out; pipelined
// requests each took a full scrape. The exporter runs as a process under
// that limit; 250 idle clients, then a scrape, then 100 pipelined ones.
func TestExporterIdleConnsAndPipelining(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t)
	if _, err := exec.LookPath("prlimit"); err != nil {
		testenv.Missing(t, "prlimit (util-linux) not installed")
	}
	srv := startIn(t, ns, false, "prlimit", "--nofile=256:256", tupleBin, "exporter", "--listen", "127.0.0.1:9779", "--kernel-facts=false").run(nil)
	srv.waitStderr("serving http://")
	// 250 clients, each making one request and keeping its connection
	// open; beyond the cap the exporter closes the longest-idle ones.
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	answered := 0
	for range 250 {
		c := dialMany(t, ns, "127.0.0.1:9779", 1)[0]
		idle = append(idle, c)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 4096)); err == nil {
			answered++
		}
	}
	if answered != 250 {
		t.Errorf("%d of 250 keep-alive clients answered", answered)
	}
	scrape := func(n int) ([]string, time.Duration) {
		start := time.Now()
		var bodies []string
		err := ns.Do(func() (err error) {
			bodies, err = pipelined("127.0.0.1:9779", n)
			return err
		})
		if err != nil {
			t.Fatalf("scrape (%d requests) with 250 idle connections: %v; stderr %s", n, err, srv.stderr.String())
		}
		return bodies, time.Since(start)
	}
	out, took := scrape(1)
	if !regexp.MustCompile(`(?m)^tuple_ephemeral_ports(\{[^}]*\})? [0-9.e+]+$`).MatchString(out[0]) {
		t.Fatalf("scrape with 250 idle connections returned no metrics in %v: %.300s", took, out[0])
	}
	t.Logf("scrape with 250 idle keep-alive connections: %v", took)
	before := counter(t, out[0], "tuple_scrape_snapshots_total")
	out, took = scrape(100)
	if len(out) != 100 {
		t.Fatalf("100 pipelined requests: %d answered", len(out))
	}
	snaps := counter(t, out[99], "tuple_scrape_snapshots_total") - before
	if snaps > 10 {
		t.Errorf("100 pipelined requests took %v snapshots, want them shared", snaps)
	}
	t.Logf("100 pipelined requests: %v, %v snapshots", took, snaps)
}

// pipelined sends n pipelined GET /metrics on one connection to addr and
// returns the bodies of the responses, decoded (chunked transfer encoding
// may split a line anywhere).
func pipelined(addr string, n int) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var req strings.Builder
	for i := range n {
		conn := "keep-alive"
		if i == n-1 {
			conn = "close"
		}
		fmt.Fprintf(&req, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: %s\r\n\r\n", conn)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req.String()); err != nil {
		return nil, err
	}
	br := bufio.NewReader(c)
	var bodies []string
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return bodies, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return bodies, err
		}
		if resp.StatusCode != http.StatusOK {
			return bodies, fmt.Errorf("status %s", resp.Status)
		}
		bodies = append(bodies, string(b))
	}
	return bodies, nil
}

// counter finds a metric's value in an exposition text.
func counter(t *testing.T, text, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	t.Fatalf("%s not in the scrape", name)
	return 0
}

// Regression: as uid 65534 the BPF note blamed MEMLOCK; the cause is not
// being root (and unprivileged_bpf_disabled, when set).
func TestUnprivilegedBPFNote(t *testing.T) {
	needTuple(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		testenv.Missing(t, "setpriv (util-linux) not installed")
	}
	out, _ := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", tupleBin, "why", "bind", "127.0.0.1:22").CombinedOutput()
	var note string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "kernel socket facts not read") {
			note = line
		}
	}
	if note == "" {
		t.Fatalf("no BPF note as uid 65534:\n%s", out)
	}
	want := "not root"
	if b, err := os.ReadFile("/proc/sys/kernel/unprivileged_bpf_disabled"); err == nil && strings.TrimSpace(string(b)) != "0" {
		want = "kernel.unprivileged_bpf_disabled=" + strings.TrimSpace(string(b))
	}
	if !strings.Contains(note, want) || strings.Contains(note, "MEMLOCK") {
		t.Errorf("note %q: want the cause (%s), not MEMLOCK", note, want)
	}
}

// tuple connect | head -1 and tuple listen -k (alone or a --steer group) |
// head -1: once the reader of standard output leaves, the session (and a
// -k server) ends quietly with 0, not "broken pipe (EPIPE)" reported as a
// network failure.
func TestRelayIntoClosedStdoutPipe(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	chunk := bytes.Repeat([]byte("x\n"), 64<<10)
	// A peer that sends until the connection breaks.
	ln := listenIn(t, ns, "10.0.0.1:7000")[0]
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	connect := startIn(t, ns, true, "tuple", "connect", "10.0.0.1", "7000")
	listen := startIn(t, ns, true, "tuple", "listen", "-k", "10.0.0.1", "7001")
	group := startIn(t, ns, true, "tuple", "listen", "-k", "--reuseport", "--steer", "hash", "--members", "2", "10.0.0.1", "7002")
	for _, p := range []*proc{connect, listen, group} {
		p.run(nil)
		p.stdin.Close()
		p.outR.Close() // the reader leaves before the first byte
	}
	for _, port := range []string{"7001", "7002"} {
		waitListening(t, ns, port)
		err := ns.Do(func() error {
			c, err := net.Dial("tcp", "10.0.0.1:"+port)
			if err != nil {
				return err
			}
			defer c.Close()
			for i := 0; i < 64; i++ {
				if _, err := c.Write(chunk); err != nil {
					return nil // the server ended: its side closed
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("dial the listener on %s: %v", port, err)
		}
	}
	for _, p := range []*proc{connect, listen, group} {
		if code := p.wait(10 * time.Second); code != 0 || p.stderr.String() != "" {
			t.Errorf("%s with its output's reader gone: exit %d, stderr %q; want 0 and nothing said", p.name, code, p.stderr.String())
		}
	}
}

// The kernel ignores an end of IP_LOCAL_PORT_RANGE outside the namespace's
// ip_local_port_range, and connect() succeeds from a port the user did not
// ask for: tuple says so, with the range the ports come from.
func TestPortRangeOutsideTheNamespaceRangeWarns(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	ns.Run(t, "sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40100")
	ln := listenIn(t, ns, "10.0.0.1:7000")[0]
	go func() { // each connection ends at once: connect exits 0
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, tc := range []struct {
		args []string
		want string // "" for no warning
	}{
		{[]string{"connect", "--port-range", "20000-20001", "10.0.0.1", "7000"}, "--port-range 20000-20001 reaches outside net.ipv4.ip_local_port_range 40000-40100, and the kernel ignores an end outside it: ports come from 40000-40100"},
		{[]string{"connect", "--port-range", "30000-40010", "10.0.0.1", "7000"}, "ports come from 40000-40010"},
		{[]string{"connect", "--port-range", "40010-40020", "10.0.0.1", "7000"}, ""},
	} {
		c := startIn(t, ns, false, "tuple", tc.args...).run(nil)
		c.stdin.Close()
		if code := c.wait(10 * time.Second); code != 0 {
			t.Fatalf("tuple %s: exit %d: %s", strings.Join(tc.args, " "), code, c.stderr.String())
		}
		got := c.stderr.String()
		if (tc.want == "") != !strings.Contains(got, "warning") || !strings.Contains(got, tc.want) {
			t.Errorf("tuple %s: stderr %q, want a warning with %q", strings.Join(tc.args, " "), got, tc.want)
		}
	}
}

// connect -z -p PORT over several open ports: each probe's close left a
// TIME_WAIT entry holding PORT, and the next probe's bind failed with
// EADDRINUSE (exit 1, the scan cut short).
func TestScanFromFixedSourcePort(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	listenIn(t, ns, "10.0.0.1:8601", "10.0.0.1:8602")
	scan := startIn(t, ns, false, "tuple", "connect", "-z", "-p", "4601", "10.0.0.1", "8601", "8602", "8603").run(nil)
	if code := scan.wait(20 * time.Second); code != 0 {
		t.Fatalf("scan exited %d: %s", code, scan.stderr.String())
	}
	want := "10.0.0.1 8601/tcp open\n10.0.0.1 8602/tcp open\n10.0.0.1 8603/tcp closed (connection refused)\n"
	if got := scan.stdout.String(); got != want {
		t.Errorf("scan printed\n%s\nwant\n%s", got, want)
	}
}
