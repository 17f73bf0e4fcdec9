package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/netnstest"
)

const hostilePolicy = `
[[grant]]
uids = [65534]
proto = "tcp"
address = "127.0.0.1"
ports = "40000-40099"
max_sockets = 5
`

// TestBrokerHostileClients throws every bad client we know at one broker:
// the wrong uid, forged identity fields, oversized, malformed and truncated
// messages, descriptors sent to the broker, floods of connections and
// requests, idle connections holding slots, clients that leave mid-hand-over
// or die before reading, and a client with no descriptor free to receive.
// Nothing may be granted wrongly, the broker must not crash, and afterwards
// it must serve a good request and count no leftover grants.
func TestBrokerHostileClients(t *testing.T) {
	ns := netnstest.New(t)
	d := startBroker(t, ns, hostilePolicy)
	_, helper := bins(t)
	run := func(uid int, args ...string) *proc {
		return start(t, ns, uid, []string{helperEnv + "=" + args[0]}, helper, args[1:]...)
	}

	// Descriptor exhaustion on the broker's side too: it gets a few more
	// descriptors than it needs idle, fewer than the clients will open.
	const brokerFDs = 24
	if err := unix.Prlimit(d.cmd.Process.Pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: brokerFDs, Max: brokerFDs}, nil); err != nil {
		t.Fatal(err)
	}

	total := hostileResult{Kinds: map[string]int{}}
	// uid 65533 has no grant at all; 65534 has one, but not for port 80.
	for _, uid := range []int{another, nobody} {
		p := run(uid, "hostile", d.sock, "127.0.0.1")
		total.add(t, "uid "+strconv.Itoa(uid), p.line())
		p.stop()
	}

	// Clients that die before reading their granted socket, and a client
	// whose process has no descriptor free to receive it: their grants
	// must not stay counted.
	for range 20 {
		p := run(nobody, "dying", d.sock, "127.0.0.1")
		<-p.done
		total.Tried++
		total.Kinds["died-mid-hand-over"]++
	}
	for range 5 {
		p := run(nobody, "nofile", d.sock, "127.0.0.1")
		got := p.line()
		total.Tried++
		total.Kinds["no-free-descriptor"]++
		if !strings.Contains(got, "fds=0") || !strings.Contains(got, "ctrunc=true") {
			t.Errorf("a client without free descriptors: %s (want the descriptor dropped by the kernel)", got)
		}
		p.stop()
	}

	// The broker is alive and well: a good request works, and the
	// abandoned and dropped sockets are no longer counted. A list sweeps
	// every dead grant away with no time cap; the sweep before a quota
	// denial gives up after quotaSweepWait, which a busy host can exceed.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gs, err := (&Client{Path: d.sock}).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if g.UID == uint32(nobody) {
			t.Errorf("a grant of uid %d outlived its dead or descriptor-less client: %+v", nobody, g)
		}
	}
	good := run(nobody, "hog", d.sock, "127.0.0.1", "6")
	if got := good.line(); got != "granted=5 denied=1" {
		t.Errorf("after the hostile clients, uid %d asking 6 times: %s; want its whole quota of 5", nobody, got)
	}
	good.stop()
	crashes, emfile := checkNoLeftovers(t, d)
	t.Logf("the broker, limited to %d descriptors, ran out of them %d times", brokerFDs, emfile)
	kinds := make([]string, 0, len(total.Kinds))
	for k, n := range total.Kinds {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	t.Logf("hostile clients: %d requests tried (%s); refused %d, hung up on %d; granted wrongly: %d; broker crashes: %d",
		total.Tried, strings.Join(kinds, " "), total.Refused, total.HungUp, total.GrantedWrongly, crashes)
	if total.GrantedWrongly != 0 {
		t.Errorf("granted wrongly: %d", total.GrantedWrongly)
	}
	if total.Tried < 1000 {
		t.Errorf("only %d hostile requests were tried", total.Tried)
	}
}

// add adds the counts a hostile helper printed (JSON) to r; its notes
// are errors.
func (r *hostileResult) add(t *testing.T, who, line string) {
	t.Helper()
	var got hostileResult
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("%s: %q: %v", who, line, err)
	}
	r.Tried += got.Tried
	r.GrantedWrongly += got.GrantedWrongly
	r.Refused += got.Refused
	r.HungUp += got.HungUp
	for k, n := range got.Kinds {
		r.Kinds[k] += n
	}
	for _, n := range got.Notes {
		t.Errorf("%s: %s", who, n)
	}
}

// checkNoLeftovers wants no live grant left once every client ended and
// no handler panic in the audit; it returns whether the broker exited
// (1) and how often accept ran out of descriptors.
func checkNoLeftovers(t *testing.T, d *daemon) (crashes, emfile int) {
	t.Helper()
	c := &Client{Path: d.sock}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gs, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 0 {
		t.Errorf("live grants left after every client ended: %+v", gs)
	}
	select {
	case <-d.done:
		crashes = 1
	default:
	}
	for _, l := range d.auditLines(t) {
		if l["msg"] == "panic" {
			t.Errorf("a handler panicked: %v", l)
		}
		if reason, _ := l["reason"].(string); l["msg"] == "accept" && strings.Contains(reason, "too many open files") {
			emfile++
		}
	}
	return crashes, emfile
}

// TestBrokerExec starts a server the systemd way as uid 65534 on port 80:
// `tuple broker exec --listen 127.0.0.1:80 -- SERVER`. The server (this
// test binary) checks LISTEN_PID against its own pid and serves the
// descriptor 3 it was given.
func TestBrokerExec(t *testing.T) {
	ns := netnstest.New(t)
	d := startBroker(t, ns, `
[[grant]]
uids = [65534]
proto = "tcp"
address = "127.0.0.1"
ports = 80
`)
	tuple, helper := bins(t)
	p := start(t, ns, nobody, []string{helperEnv + "=activated"}, tuple,
		"broker", "exec", "--broker", d.sock, "--listen", "127.0.0.1:80", "--name", "web", "--", helper)
	var got string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		got, err = tryAsk(ns, "127.0.0.1:80")
		if err == nil {
			break
		}
		select {
		case <-p.done:
			t.Fatalf("tuple broker exec ended: %v; stderr: %s", p.err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("port 80 never answered: %v; stderr: %s", err, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var uid, pid, listenPID int
	var name string
	if _, err := fmt.Sscanf(got, "uid=%d pid=%d listen_pid=%d name=%s", &uid, &pid, &listenPID, &name); err != nil {
		t.Fatalf("server said %q: %v", got, err)
	}
	if uid != nobody || pid != listenPID || name != "web" || pid == p.cmd.Process.Pid {
		t.Errorf("server: uid=%d pid=%d LISTEN_PID=%d name=%s (tuple exec is pid %d); want uid %d, LISTEN_PID its own pid, name web",
			uid, pid, listenPID, name, p.cmd.Process.Pid, nobody)
	}
	// SIGTERM reaches the server through tuple, which exits with its status.
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		var ee *exec.ExitError
		if p.err != nil && !(errors.As(p.err, &ee) && ee.ExitCode() == 128+int(syscall.SIGTERM)) {
			t.Errorf("tuple broker exec after SIGTERM: %v (want exit 0 or 143)", p.err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("tuple broker exec did not end on SIGTERM")
	}
	t.Logf("server on 127.0.0.1:80 answered %q", got)
}
