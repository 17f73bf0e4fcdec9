package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/leakcheck"
	"github.com/tuple-net/tuple/internal/netnstest"
)

func TestUDPRoundTrip(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32", "10.0.0.2/32")
	server := startIn(t, ns, false, "tuple", "listen", "-u", "-v", "10.0.0.1", "9999").run(nil)
	server.waitStderr("listening on 10.0.0.1:9999 (udp)")
	client := startIn(t, ns, false, "tuple", "connect", "-u", "-v", "-w", "0.3", "-s", "10.0.0.2", "-p", "5353", "10.0.0.1", "9999").run(nil)
	client.waitStderr("connected 10.0.0.2:5353 -> 10.0.0.1:9999 (udp)")
	client.stdin.Write([]byte("ping\n"))

	server.waitStdout("ping\n")
	server.waitStderr("peer 10.0.0.1:9999 <- 10.0.0.2:5353 (udp)")
	server.stdin.Write([]byte("pong\n")) // goes to the latest peer
	client.waitStdout("pong\n")
	// With stdin ended, -w is how long it waits for more replies.
	client.stdin.Close()
	client.wantExit0("pong\n", "the reply")
}

func TestUDPConnectRefused(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	client := startIn(t, ns, false, "tuple", "connect", "-u", "-w", "5", "10.0.0.1", "9999").run(nil)
	client.stdin.Write([]byte("anyone?\n"))
	if code := client.wait(10 * time.Second); code != 1 || !strings.Contains(client.stderr.String(), "connection refused") {
		t.Errorf("UDP to a closed port: exit %d, stderr %q; want 1 and connection refused", code, client.stderr.String())
	}
}

func TestScanReportsOpenAndClosed(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	listenIn(t, ns, "10.0.0.1:22", "10.0.0.1:25")
	scan := startIn(t, ns, false, "tuple", "connect", "-z", "-w", "2", "10.0.0.1", "20-30").run(nil)
	wantScan(t, scan, "tcp", map[int]string{22: "open", 25: "open"})
	// A name is resolved (from /etc/hosts; the namespace has no route
	// anywhere else).
	listenIn(t, ns, "127.0.0.1:2222")
	byName := startIn(t, ns, false, "tuple", "connect", "-z", "-4", "-v", "localhost", "2222").run(nil)
	if code := byName.wait(20 * time.Second); code != 0 || byName.stdout.String() != "localhost 2222/tcp open\n" ||
		!strings.Contains(byName.stderr.String(), "-> 127.0.0.1:2222 (tcp)") {
		t.Errorf("scan of localhost: exit %d, %q, %q", code, byName.stdout.String(), byName.stderr.String())
	}

	none := startIn(t, ns, false, "tuple", "connect", "-z", "10.0.0.1", "26-28").run(nil)
	if code := none.wait(20 * time.Second); code != 1 {
		t.Errorf("scan with every port closed exited %d, want 1 (like nc)", code)
	}
}

// TestUDPScanReportsOpenClosedAndSilent: -zu tells a port that answers
// (open), one the kernel refuses (closed) and one that stays silent
// (open|filtered), and a range of 300 closed ports all as closed.
func TestUDPScanReportsOpenClosedAndSilent(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	var silent, echo net.PacketConn
	err := ns.Do(func() (err error) {
		if silent, err = net.ListenPacket("udp", "10.0.0.1:22"); err != nil {
			return err
		}
		echo, err = net.ListenPacket("udp", "10.0.0.1:25")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close(); echo.Close() })
	go func() {
		b := make([]byte, 64)
		for {
			n, from, err := echo.ReadFrom(b)
			if err != nil {
				return
			}
			echo.WriteTo(b[:n], from)
		}
	}()
	scan := startIn(t, ns, false, "tuple", "connect", "-zu", "-w", "200ms", "10.0.0.1", "20-30").run(nil)
	wantScan(t, scan, "udp", map[int]string{22: "open|filtered (no answer)", 25: "open"})

	// A closed port answers at once: the long wait costs nothing, and
	// keeps an answer the scheduler delays on a busy machine from
	// looking like silence.
	many := startIn(t, ns, false, "tuple", "connect", "-zu", "-w", "2s", "10.0.0.1", "40000-40299").run(nil)
	if code := many.wait(60 * time.Second); code != 1 {
		t.Errorf("UDP scan of closed ports exited %d, want 1 (like nc): %s", code, many.stderr.String())
	}
	if got := strings.Count(many.stdout.String(), "/udp closed (connection refused)\n"); got != 300 {
		t.Errorf("UDP scan of 300 closed ports: %d reported closed; output starts %q", got, firstLines(many.stdout.String(), 3))
	}
}

// TestUDPScanKeepsWithinICMPBudget: a -zu scan paces its probes by the
// budget of ICMP errors its namespace's sysctls give, so a peer with that
// budget or more never has to drop a port-unreachable answer: its
// IcmpOutRateLimitGlobal counter stays where it was, and every closed port
// shows closed. The peer is behind a veth pair: an answer to a datagram
// that came in over loopback is outside the budget on newer kernels (6.18
// here), so a scan of a local address cannot show it. Unpaced, the same
// scan makes the peer drop answers (the counter moves; the second probe of
// a silent port still finds most of them closed).
func TestUDPScanKeepsWithinICMPBudget(t *testing.T) {
	needTuple(t)
	scanner, peer := netnstest.New(t), netnstest.New(t)
	// Where the budget is the host's alone, a new namespace has no such
	// sysctl, and the host's is not the test's to change.
	if err := peer.Command(context.Background(), "test", "-w", "/proc/sys/net/ipv4/icmp_msgs_burst").Run(); err != nil {
		t.Skip("the ICMP budget is not each namespace's own on this kernel (no net.ipv4.icmp_msgs_burst in a new namespace)")
	}
	scanner.IP(t, "link", "add", "s0", "type", "veth", "peer", "name", "p0", "netns", peer.Name)
	scanner.IP(t, "addr", "add", "10.0.1.1/24", "dev", "s0")
	peer.IP(t, "addr", "add", "10.0.1.2/24", "dev", "p0")
	scanner.IP(t, "link", "set", "s0", "up")
	peer.IP(t, "link", "set", "p0", "up")
	// The scan keeps to half its namespace's budget; the peer's is twice
	// that again, so only a scan that ignores the budget can exhaust it.
	// The peer's other limit, one answer a second per host after six, is
	// off.
	scanner.Sysctl(t, "net.ipv4.icmp_msgs_per_sec", "50")
	scanner.Sysctl(t, "net.ipv4.icmp_msgs_burst", "4")
	peer.Sysctl(t, "net.ipv4.icmp_msgs_per_sec", "100")
	peer.Sysctl(t, "net.ipv4.icmp_msgs_burst", "10")
	peer.Sysctl(t, "net.ipv4.icmp_ratelimit", "0")
	// A new namespace starts with the default burst (50 answers) in hand:
	// spent here, by datagrams to a closed port, so the scan meets the
	// budget of 10 at once.
	err := scanner.Do(func() error {
		c, err := net.ListenPacket("udp4", "10.0.1.1:0")
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.UDPAddr{IP: net.IPv4(10, 0, 1, 2), Port: 39999}
		for range 200 {
			if _, err := c.WriteTo(nil, to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	before := icmpRateLimited(t, peer)
	if before == 0 {
		t.Fatal("the peer dropped no answer to 200 datagrams: its budget is not the one this test set")
	}
	scan := startIn(t, scanner, false, "tuple", "connect", "-zu", "-w", "2s", "10.0.1.2", "40000-40039").run(nil)
	if code := scan.wait(60 * time.Second); code != 1 {
		t.Errorf("UDP scan of closed ports exited %d, want 1 (like nc): %s", code, scan.stderr.String())
	}
	if got := strings.Count(scan.stdout.String(), "/udp closed (connection refused)\n"); got != 40 {
		t.Errorf("UDP scan of 40 closed ports: %d reported closed; output starts %q", got, firstLines(scan.stdout.String(), 3))
	}
	if dropped := icmpRateLimited(t, peer) - before; dropped != 0 {
		t.Errorf("the peer dropped %d port-unreachable answers over its budget during the scan: the probes did not keep to it", dropped)
	}
}

// icmpRateLimited is ns's count of ICMP errors its kernel did not send
// for want of budget (Icmp OutRateLimitGlobal in /proc/net/snmp).
func icmpRateLimited(t *testing.T, ns *netnstest.NS) int {
	t.Helper()
	n, found := ns.Counter(t, "snmp", "Icmp:", "OutRateLimitGlobal")
	if !found {
		t.Skip("this kernel does not count ICMP errors dropped over the budget (Icmp OutRateLimitGlobal)")
	}
	return n
}

// wantScan checks a scan of 10.0.0.1 20-30 that found some port open: it
// exits 0 with one line per port, each port's state as in states, the
// others closed.
func wantScan(t *testing.T, scan *proc, proto string, states map[int]string) {
	t.Helper()
	if code := scan.wait(20 * time.Second); code != 0 {
		t.Fatalf("%s scan with open ports exited %d: %s", proto, code, scan.stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(scan.stdout.String()), "\n")
	if len(lines) != 11 {
		t.Fatalf("%s scan of 20-30 printed %d lines: %q", proto, len(lines), lines)
	}
	for i, line := range lines {
		state, ok := states[20+i]
		if !ok {
			state = "closed (connection refused)"
		}
		if want := fmt.Sprintf("10.0.0.1 %d/%s %s", 20+i, proto, state); line != want {
			t.Errorf("line %d: %q, want %q", i, line, want)
		}
	}
}

// TestListenBroadcast: with -k --broadcast what stdin reads goes to every
// client connected at the time, what clients send still goes to stdout,
// and stdin's end shuts every client's write side, a later client's at
// once.
func TestListenBroadcast(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	server := startIn(t, ns, false, "tuple", "listen", "-k", "--broadcast", "-v", "10.0.0.1", "9000").run(nil)
	server.waitStderr("listening on 10.0.0.1:9000 (tcp)")
	dial := func() net.Conn {
		t.Helper()
		var c net.Conn
		if err := ns.Do(func() (err error) { c, err = net.Dial("tcp", "10.0.0.1:9000"); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		server.waitStderr("accepted 10.0.0.1:9000 <- " + c.LocalAddr().String())
		return c
	}
	clients := []net.Conn{dial(), dial()}
	server.stdin.Write([]byte("to everyone\n"))
	for i, c := range clients {
		got := make([]byte, len("to everyone\n"))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "to everyone\n" {
			t.Errorf("client %d read %q, %v; want the broadcast", i, got, err)
		}
	}
	clients[0].Write([]byte("from a client\n"))
	server.waitStdout("from a client\n")
	server.stdin.Close()
	for i, c := range append(clients, dial()) {
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Errorf("client %d after stdin's end: read %q, %v; want EOF", i, rest, err)
		}
	}
}

// firstLines is the first n lines of s.
func firstLines(s string, n int) string {
	lines := strings.SplitAfterN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "")
}

// TestListenKeepDoesNotLeak runs `tuple listen -k` in this process (in a
// namespace) through the command itself, serves 1,000 connections, batches
// of them at once, stops it, and counts descriptors and goroutines.
func TestListenKeepDoesNotLeak(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32")
	fdsBefore, goBefore := leakcheck.OpenFDs(), runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outR, outW := io.Pipe()
	var errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- ns.Do(func() error {
			root := NewRoot(Streams{In: strings.NewReader(""), Out: outW, Err: &errOut})
			root.SetArgs([]string{"listen", "-k", "-v", "10.0.0.1", "7000"})
			return root.ExecuteContext(ctx)
		})
		outW.Close()
	}()
	lines := make(chan int, 1)
	go func() {
		n := 0
		for sc := bufio.NewScanner(outR); sc.Scan(); {
			if strings.HasPrefix(sc.Text(), "hello ") {
				n++
			}
		}
		lines <- n
	}()
	for !strings.Contains(errOut.String(), "listening on") {
		select {
		case err := <-done:
			t.Fatalf("listen ended early: %v; %s", err, errOut.String())
		case <-time.After(5 * time.Millisecond):
		}
	}

	const total, batch = 1000, 20
	err := ns.Do(func() error { return sendInBatches("10.0.0.1:7000", total, batch) })
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("listen -k after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("listen -k did not stop when its context was cancelled")
	}
	if n := <-lines; n != total {
		t.Errorf("stdout got %d client lines, want %d", n, total)
	}
	if n := strings.Count(errOut.String(), "accepted 10.0.0.1:7000 <- "); n != total {
		t.Errorf("-v logged %d connections, want %d", n, total)
	}

	// Descriptors and goroutines end asynchronously after the command
	// returns; nothing signals the last one.
	if !poll(10*time.Second, func() bool { return leakcheck.OpenFDs() <= fdsBefore && runtime.NumGoroutine() <= goBefore }) {
		t.Fatalf("after %d connections: %d descriptors (%d before), %d goroutines (%d before)", total, leakcheck.OpenFDs(), fdsBefore, runtime.NumGoroutine(), goBefore)
	}
}

// sendInBatches opens total connections to addr, batch of them open at
// once, each sending "hello N" and half-closing; it wants the server to
// close each one.
func sendInBatches(addr string, total, batch int) error {
	for i := 0; i < total; i += batch {
		conns := make([]net.Conn, 0, batch)
		for j := range batch {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			conns = append(conns, c)
			fmt.Fprintf(c, "hello %d\n", i+j)
		}
		for _, c := range conns { // all of the batch are open at once
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := c.Read(make([]byte, 1))
			c.Close()
			if err != io.EOF {
				return fmt.Errorf("read %v, want EOF after the server closed", err)
			}
		}
	}
	return nil
}

// TestListenPortZeroSaysWhichPort: with port 0 the kernel picks the port,
// and listen prints it even without -v so a client can be pointed at it.
func TestListenPortZeroSaysWhichPort(t *testing.T) {
	ns := netnstest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	var errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- ns.Do(func() error {
			root := NewRoot(Streams{In: strings.NewReader(""), Out: io.Discard, Err: &errOut})
			root.SetArgs([]string{"listen", "-k", "127.0.0.1", "0"})
			return root.ExecuteContext(ctx)
		})
	}()
	defer func() { cancel(); <-done }()
	if !errOut.await(5*time.Second, nil, func(s string) bool { return strings.Contains(s, "listening on 127.0.0.1:") }) {
		t.Fatalf("no listening line for port 0: %q", errOut.String())
	}
	var addr string
	fmt.Sscanf(errOut.String(), "listening on %s", &addr)
	if err := ns.Do(func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Errorf("connecting to the announced %s: %v", addr, err)
	}
}
