package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// TestListenHandover restarts `tuple listen -k --handover PATH` five times
// while clients connect without pause: each new process takes the listening
// socket over, the old one exits 0 once the new one accepts, and every
// client's line reaches one of them: nothing refused, reset or lost.
func TestListenHandover(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	path := filepath.Join(t.TempDir(), "handover.sock")
	args := []string{"listen", "-k", "-v", "--handover", path, "10.0.0.1", "7070"}
	gens := []*proc{startIn(t, ns, false, "tuple", args...).run(nil)}
	gens[0].waitStderr("listening on 10.0.0.1:7070 (tcp), 1 listener(s) opened")

	clients := startLineClients(t, ns, "10.0.0.1:7070", 3)
	for g := 1; g <= 5; g++ {
		clients.served(t, 10)
		next := startIn(t, ns, false, "tuple", args...).run(nil)
		next.waitStderr("1 listener(s) taken over from " + path)
		t0 := time.Now()
		if code := gens[g-1].wait(10 * time.Second); code != 0 {
			t.Fatalf("generation %d exited %d after the hand-over: %s", g-1, code, gens[g-1].stderr.String())
		}
		t.Logf("generation %d exited %v after the hand-over", g-1, time.Since(t0))
		gens = append(gens, next)
	}
	clients.served(t, 10)
	sent, failures := clients.end()
	last := gens[len(gens)-1]
	last.cmd.Process.Signal(syscall.SIGINT)
	if code := last.wait(10 * time.Second); code != 0 {
		t.Errorf("last generation exited %d on SIGINT: %s", code, last.stderr.String())
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d connections failed across 5 hand-overs, first: %s", len(failures), len(failures)+len(sent), failures[0])
	}
	got := map[string]int{}
	for i, p := range gens {
		n := 0
		for _, l := range strings.Split(p.stdout.String(), "\n") {
			if l != "" {
				got[l]++
				n++
			}
		}
		if n == 0 {
			t.Errorf("generation %d served no connection", i)
		}
	}
	for _, l := range sent {
		if got[l] != 1 {
			t.Errorf("%q reached %d servers, want 1", l, got[l])
		}
	}
	t.Logf("%d connections over 6 generations, none failed or lost", len(sent))
}

// lineClients are clients sending one line per connection, without
// pause, to a server that closes once it has read the client's EOF.
type lineClients struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	sent     []string // lines delivered (the server closed without a reset)
	failures []string // lines that failed, with the error
}

// startLineClients starts n clients connecting to addr from inside ns.
func startLineClients(t *testing.T, ns *netnstest.NS, addr string, n int) *lineClients {
	l := &lineClients{stop: make(chan struct{})}
	for c := range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			err := ns.Do(func() error {
				for i := 0; ; i++ {
					select {
					case <-l.stop:
						return nil
					default:
					}
					line := fmt.Sprintf("client %d line %d", c, i)
					err := sendLine(addr, line)
					l.mu.Lock()
					if err != nil {
						l.failures = append(l.failures, line+": "+err.Error())
					} else {
						l.sent = append(l.sent, line)
					}
					l.mu.Unlock()
					time.Sleep(2 * time.Millisecond) // pacing: a steady client, not a flood
				}
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	return l
}

// served waits until the clients have had n more lines accepted, so every
// generation carries traffic before it hands over.
func (l *lineClients) served(t *testing.T, n int) {
	t.Helper()
	l.mu.Lock()
	want := len(l.sent) + len(l.failures) + n
	l.mu.Unlock()
	waitFor(t, fmt.Sprintf("%d more client lines", n), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.sent)+len(l.failures) >= want
	})
}

// end stops the clients and returns the lines delivered and the failures.
func (l *lineClients) end() (sent, failures []string) {
	close(l.stop)
	l.wg.Wait()
	return l.sent, l.failures
}

// sendLine sends line on a new connection to addr, half-closes, and waits
// for the server to close (a reset shows as the error).
func sendLine(addr, line string) error {
	conn, err := net.DialTimeout("tcp4", addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte(line + "\n")); err != nil {
		return err
	}
	conn.(*net.TCPConn).CloseWrite()
	_, err = io.Copy(io.Discard, conn)
	return err
}

// TestListenGroupFlagsBadInput: group flags without what they need are bad
// input (exit 2) naming the flag.
func TestListenGroupFlagsBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"listen", "-k", "--steer", "cpu", "8080"}, "need --reuseport"},
		{[]string{"listen", "--reuseport", "--steer", "cpu", "8080"}, "need -k"},
		{[]string{"listen", "-k", "--reuseport", "--steer", "rr", "8080"}, `steering "rr": want hash, cpu or map`},
		{[]string{"listen", "-k", "--reuseport", "--steer", "cpu", "--migrate", "8080"}, "tcp_migrate_req"},
		{[]string{"listen", "-u", "--handover", "/tmp/x", "8080"}, "TCP only"},
	} {
		var out, errb strings.Builder
		code := Main(tc.args, Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("tuple %s: exit %d, stderr %q; want 2 and %q", strings.Join(tc.args, " "), code, errb.String(), tc.want)
		}
	}
}

// TestListenGroupSIGTERMFinishesConnections: the first SIGTERM stops
// accepting (a new connection is refused) while an open connection still
// delivers what it sends afterwards, and the process then exits 0.
func TestListenGroupSIGTERMFinishesConnections(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	srv := startIn(t, ns, false, "tuple", "listen", "-k", "-v", "--reuseport", "--members", "1", "10.0.0.1", "7071").run(nil)
	srv.waitStderr("listening on 10.0.0.1:7071")
	var conn net.Conn
	err := ns.Do(func() (err error) {
		conn, err = net.Dial("tcp4", "10.0.0.1:7071")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("before\n"))
	srv.waitStderr("accepted ")
	srv.cmd.Process.Signal(syscall.SIGTERM)
	// The listener leaves the socket table; then a new connection is
	// refused (or reset, when its SYN met the closing listener).
	waitWithin(t, 5*time.Second, "the listener to close after SIGTERM", func() bool {
		return strings.TrimSpace(ns.Run(t, "ss", "-Htln", "sport = :7071")) == ""
	})
	err = ns.Do(func() error {
		c, err := net.Dial("tcp4", "10.0.0.1:7071")
		if err == nil {
			c.Close()
			return errors.New("a new connection was accepted after SIGTERM closed the listener")
		}
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
			return nil
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("after\n")); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("open connection after SIGTERM: %v", err)
	}
	srv.wantExit0("before\nafter\n", "both lines, exit 0 after SIGTERM")
}

// TestListenHandoverRefusesOtherAddress: `listen --handover S 10.0.0.1
// 7075` with a server of 10.0.0.1:7074 at S took over 7074 and served it,
// and the old server stopped. Now it exits 2 naming both, before the old
// server is told anything: that one goes on serving 7074 (and can still
// hand over to a successor that asks for 7074), and nothing listens on 7075.
func TestListenHandoverRefusesOtherAddress(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	path := filepath.Join(t.TempDir(), "handover.sock")
	old := startIn(t, ns, false, "tuple", "listen", "-k", "-v", "--handover", path, "10.0.0.1", "7074").run(nil)
	old.waitStderr("listening on 10.0.0.1:7074 (tcp), 1 listener(s) opened")

	wrong := startIn(t, ns, false, "tuple", "listen", "-k", "-v", "--handover", path, "10.0.0.1", "7075").run(nil)
	code := wrong.wait(10 * time.Second)
	errOut := wrong.stderr.String()
	want := "tuple: listen: --handover " + path + ": the process there serves 10.0.0.1:7074 (tcp), not 10.0.0.1:7075 as asked; it goes on serving\n"
	if code != 2 || errOut != want {
		t.Errorf("listen --handover on another port: exit %d, stderr %q; want 2 and %q", code, errOut, want)
	}
	if out := strings.TrimSpace(ns.Run(t, "ss", "-Htln", "sport = :7075")); out != "" {
		t.Errorf("something listens on 7075: %s", out)
	}
	err := ns.Do(func() error { return sendLine("10.0.0.1:7074", "still served") })
	if err != nil {
		t.Fatalf("the old server after the refused take-over: %v", err)
	}
	if !old.stdout.await(5*time.Second, old.done, func(s string) bool { return s == "still served\n" }) {
		t.Fatalf("the old server printed %q, want %q; stderr: %s", old.stdout.String(), "still served\n", old.stderr.String())
	}

	next := startIn(t, ns, false, "tuple", "listen", "-k", "-v", "--handover", path, "10.0.0.1", "7074").run(nil)
	next.waitStderr("listening on 10.0.0.1:7074 (tcp), 1 listener(s) taken over from " + path)
	old.wantExit0("still served\n", "the line sent before the hand-over")
	next.cmd.Process.Signal(syscall.SIGINT)
	if code := next.wait(10 * time.Second); code != 0 {
		t.Errorf("the successor exited %d on SIGINT: %s", code, next.stderr.String())
	}
}

// TestListenHandoverKeepsNonSocket: `listen -k --handover PATH` removed a
// regular file or an empty directory at PATH (it took them for a dead
// server's socket). Now it is bad input naming PATH and what it is, before
// anything listens, and PATH is left as it was.
func TestListenHandoverKeepsNonSocket(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	dir := t.TempDir()
	file, empty := filepath.Join(dir, "passwd"), filepath.Join(dir, "empty")
	if err := os.WriteFile(file, []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, what := range map[string]string{file: "a regular file", empty: "a directory"} {
		p := startIn(t, ns, false, "tuple", "listen", "-k", "--handover", path, "10.0.0.1", "8305").run(nil)
		code := p.wait(10 * time.Second)
		want := "tuple: listen: --handover: " + path + " is " + what + ", not a unix socket\n"
		if code != 2 || p.stderr.String() != want {
			t.Errorf("listen --handover over %s: exit %d, stderr %q; want 2 and %q", what, code, p.stderr.String(), want)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("the file after listen --handover: %q, %v", b, err)
	}
	if fi, err := os.Stat(empty); err != nil || !fi.IsDir() {
		t.Errorf("the directory after listen --handover: %v", err)
	}
}
