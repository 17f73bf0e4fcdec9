package broker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/internal/syncio"
	"github.com/tuple-net/tuple/internal/testenv"
	"github.com/tuple-net/tuple/socktab"
	"golang.org/x/sys/unix"
)

// The tests run the real daemon (`tuple broker`, built once) in a network
// namespace of their own, and clients as real processes of other uids
// (this test binary in a helper mode, started with syscall.Credential).

var (
	binOnce                     sync.Once
	binDir, tupleBin, helperBin string
	binErr                      error
)

func removeBins() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// bins builds tuple and copies this test binary into a directory every uid
// can read.
func bins(t testing.TB) (string, string) {
	t.Helper()
	binOnce.Do(func() {
		if tupleBin, binDir, binErr = testenv.BuildTuple("tuple-broker-test-"); binErr != nil {
			return
		}
		self, err := os.Executable()
		if err != nil {
			binErr = err
			return
		}
		b, err := os.ReadFile(self)
		if err != nil {
			binErr = err
			return
		}
		helperBin = filepath.Join(binDir, "helper")
		binErr = os.WriteFile(helperBin, b, 0o755)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return tupleBin, helperBin
}

// proc is a child process whose stdout we read line by line; closing its
// stdin ends it.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr syncio.Buffer
	done   chan struct{}
	err    error
}

// start runs bin args inside ns as uid (-1: root), with extra env.
func start(t testing.TB, ns *netnstest.NS, uid int, env []string, bin string, args ...string) *proc {
	t.Helper()
	return startInCgroup(t, ns, uid, -1, env, bin, args...)
}

// startInCgroup is start with the child born in the cgroup whose directory
// cgroupFD is open (-1: ours).
func startInCgroup(t testing.TB, ns *netnstest.NS, uid, cgroupFD int, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: fmt.Sprintf("%s %s (uid %d)", filepath.Base(bin), strings.Join(args, " "), uid),
		lines: make(chan string, 1024), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{}
	if uid >= 0 {
		p.cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}
	}
	if cgroupFD >= 0 {
		p.cmd.SysProcAttr.UseCgroupFD, p.cmd.SysProcAttr.CgroupFD = true, cgroupFD
	}
	p.cmd.Stderr = &p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Started from a thread inside the namespace, the child lives there.
	if err := ns.Do(p.cmd.Start); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	return p
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// line returns the next line the process printed.
func (p *proc) line() string {
	p.t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			<-p.done
			p.t.Fatalf("%s ended (%v) without more output; stderr: %s", p.name, p.err, p.stderr.String())
		}
		return l
	case <-time.After(120 * time.Second):
		p.t.Fatalf("%s printed nothing for 120s; stderr: %s", p.name, p.stderr.String())
	}
	return ""
}

// stop closes stdin and waits for the process, killing it if it lingers.
func (p *proc) stop() {
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// daemon is a running `tuple broker`.
type daemon struct {
	*proc
	dir, sock, policy, audit, metrics string
}

// startBroker runs tuple broker with policy inside ns and waits until it
// answers. At cleanup it must still be running and exit cleanly on SIGTERM:
// a broker that died on the way is a crash.
func startBroker(t testing.TB, ns *netnstest.NS, policy string) *daemon {
	t.Helper()
	tuple, _ := bins(t)
	// t.TempDir's parent is private; the clients' uids must reach the socket.
	dir, err := os.MkdirTemp("", "tuple-broker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &daemon{dir: dir, sock: filepath.Join(dir, "broker.sock"), policy: filepath.Join(dir, "policy.toml"),
		audit: filepath.Join(dir, "audit.jsonl"), metrics: "127.0.0.1:9464"}
	d.writePolicy(t, policy)
	d.proc = start(t, ns, -1, nil, tuple, "broker", "--policy", d.policy, "--socket", d.sock, "--audit", d.audit, "--metrics", d.metrics)
	t.Cleanup(func() {
		select {
		case <-d.done:
			t.Errorf("the broker crashed or exited during the test: %v; stderr: %s", d.err, d.stderr.String())
			return
		default:
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
			if d.err != nil {
				t.Errorf("broker exit on SIGTERM: %v; stderr: %s", d.err, d.stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Errorf("broker did not stop on SIGTERM")
			d.cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unixpacket", d.sock)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker not answering on %s: %v; stderr: %s", d.sock, err, d.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d
}

func (d *daemon) writePolicy(t testing.TB, policy string) {
	t.Helper()
	if err := os.WriteFile(d.policy, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
}

// auditLines returns the audit trail's records.
func (d *daemon) auditLines(t *testing.T) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(d.audit)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for line := range bytes.Lines(b) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("audit line is not JSON: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// waitAudit waits for an audit record with msg and decision.
func (d *daemon) waitAudit(t *testing.T, msg, decision string, after int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		lines := d.auditLines(t)
		for _, l := range lines[min(after, len(lines)):] {
			if l["msg"] == msg && l["decision"] == decision {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no audit record %s/%s", msg, decision)
}

// ask connects to addr inside ns and returns the first line the server
// sends.
func ask(t *testing.T, ns *netnstest.NS, addr string) string {
	t.Helper()
	line, err := tryAsk(ns, addr)
	if err != nil {
		t.Fatalf("connect %s: %v", addr, err)
	}
	return line
}

func tryAsk(ns *netnstest.NS, addr string) (string, error) {
	var line string
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	return strings.TrimSpace(line), err
}

const (
	nobody  = 65534
	another = 65533
	third   = 65532
)

const basePolicy = `
[[grant]]
uids = [65534]
proto = "tcp"
address = "127.0.0.1"
ports = 80

[[grant]]
uids = [65534, 65533]
proto = "tcp"
address = "127.0.0.1"
ports = 8080
group = "web"

[[grant]]
uids = [65534]
proto = "tcp"
address = "127.0.0.1"
ports = "40000-40019"
max_sockets = 5
`

func TestBrokerUsers(t *testing.T) {
	ns := netnstest.New(t)
	// The ephemeral range is the hog's grant: a user who could take
	// it all would deny the namespace its outgoing connections.
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40019")
	d := startBroker(t, ns, basePolicy)
	_, helper := bins(t)
	u := &usersFixture{ns: ns, d: d, helper: helper}

	// Allowed: nobody gets port 80 and serves it as itself.
	u.web = u.run(t, nobody, "listen", d.sock, "127.0.0.1:80")
	if got := u.web.line(); got != "granted 127.0.0.1:80" {
		t.Fatalf("uid %d asking for 127.0.0.1:80: %s", nobody, got)
	}
	if got, want := ask(t, ns, "127.0.0.1:80"), fmt.Sprintf("uid=%d pid=%d", nobody, u.web.cmd.Process.Pid); got != want {
		t.Errorf("port 80 answered %q, want %q", got, want)
	}
	// The socket is the grantee's own, as if it had made it.
	var owner uint32
	ns.Do(func() error {
		tab, err := socktab.Snapshot(context.Background(), socktab.Query{TCP: true, LocalPort: 80, States: socktab.States(socktab.Listen)})
		if err == nil && len(tab.Sockets) == 1 {
			owner = tab.Sockets[0].UID
		}
		return err
	})
	if owner != nobody {
		t.Errorf("the listener on port 80 belongs to uid %d, want the grantee %d", owner, nobody)
	}

	t.Run("denied", u.denied)
	t.Run("quota", u.quota)
	t.Run("cross-uid reuseport group", u.crossUIDGroup)
	t.Run("ls", u.list)
	t.Run("reload", u.reload)
	t.Run("audit and metrics", u.auditAndMetrics)
}

// usersFixture is TestBrokerUsers' namespace and broker, and the
// listener on port 80 the broker granted uid 65534 first.
type usersFixture struct {
	ns     *netnstest.NS
	d      *daemon
	helper string
	web    *proc
}

// run starts the test binary's helper args[0] as uid with args[1:].
func (u *usersFixture) run(t *testing.T, uid int, args ...string) *proc {
	return start(t, u.ns, uid, []string{helperEnv + "=" + args[0]}, u.helper, args[1:]...)
}

// denied: requests outside the policy, and one the kernel refuses, are denied with the reason.
func (u *usersFixture) denied(t *testing.T) {
	for _, tc := range []struct {
		uid        int
		addr, want string
	}{
		{another, "127.0.0.1:80", "port 80 is outside 8080"},
		{third, "127.0.0.1:80", "no grant names uid 65532"},
		{nobody, "127.0.0.2:80", "no grant for uid 65534 allows tcp 127.0.0.2"},
		{nobody, "127.0.0.1:81", "port 81 is outside 80"},
		// Allowed, but the port is taken: the kernel says no.
		{nobody, "127.0.0.1:80", "address already in use"},
	} {
		p := u.run(t, tc.uid, "listen", u.d.sock, tc.addr)
		if got := p.line(); !strings.HasPrefix(got, "denied") || !strings.Contains(got, tc.want) {
			t.Errorf("uid %d asking for %s: %q, want a denial with %q", tc.uid, tc.addr, got, tc.want)
		}
		p.stop()
	}
}

// quota: a user asking for more than the ephemeral range gets its grant's quota, and gets it back once its sockets are gone.
func (u *usersFixture) quota(t *testing.T) {
	// A user asks for more than the whole ephemeral range, one
	// socket at a time.
	t0 := time.Now()
	hog := u.run(t, nobody, "hog", u.d.sock, "127.0.0.1", "25")
	if got := hog.line(); got != "granted=5 denied=20" {
		t.Errorf("hog: %s, want 5 granted and 20 denied", got)
	}
	if got := hog.line(); !strings.Contains(got, "quota: uid 65534 holds 5 of 5 sockets under grant #3") {
		t.Errorf("hog's first denial: %s", got)
	}
	t.Logf("25 requests of the hog answered in %v", time.Since(t0))
	if os.Getenv("BROKER_DEBUG_AUDIT") != "" {
		b, _ := os.ReadFile(u.d.audit)
		t.Logf("audit:\n%s", b)
	}
	// The namespace still connects: 15 ephemeral ports are left.
	if got := ask(t, u.ns, "127.0.0.1:80"); !strings.HasPrefix(got, "uid=") {
		t.Errorf("connect during the hog: %q", got)
	}
	// Released sockets stop counting: the broker sees them go at its
	// next sweep of the socket table, which a busy host can delay.
	hog.stop()
	got := ""
	for range 20 {
		again := u.run(t, nobody, "hog", u.d.sock, "127.0.0.1", "7")
		got = again.line()
		again.stop()
		if got == "granted=5 denied=2" {
			break
		}
		time.Sleep(time.Second)
	}
	if got != "granted=5 denied=2" {
		t.Errorf("after the hog exited: %s, want the quota back (5 granted)", got)
	}
}

// crossUIDGroup: the broker's group spans uids, where SO_REUSEPORT alone shares only within one.
func (u *usersFixture) crossUIDGroup(t *testing.T) {
	a := u.run(t, nobody, "listen", u.d.sock, "127.0.0.1:8080", "web")
	b := u.run(t, another, "listen", u.d.sock, "127.0.0.1:8080", "web")
	for _, p := range []*proc{a, b} {
		if got := p.line(); got != "granted 127.0.0.1:8080" {
			t.Fatalf("%s: %s", p.name, got)
		}
	}
	served := map[string]int{}
	for range 64 {
		reply := ask(t, u.ns, "127.0.0.1:8080")
		served[strings.Fields(reply)[0]]++
	}
	if served["uid=65534"] == 0 || served["uid=65533"] == 0 {
		t.Errorf("64 connections to the group were served by %v; want both uids", served)
	}
	t.Logf("group web: 64 connections served by %v", served)
	// Beside it, the plain rule: SO_REUSEPORT shares only within a uid.
	s1 := u.run(t, nobody, "selflisten", "127.0.0.1:50000")
	if got := s1.line(); !strings.HasPrefix(got, "listening") {
		t.Fatalf("uid %d reuseport listener: %s", nobody, got)
	}
	s2 := u.run(t, another, "selflisten", "127.0.0.1:50000")
	if got := s2.line(); !strings.Contains(got, "address already in use") {
		t.Errorf("uid %d joining uid %d's reuseport listener: %q, want EADDRINUSE", another, nobody, got)
	}
	s3 := u.run(t, nobody, "selflisten", "127.0.0.1:50000")
	if got := s3.line(); !strings.HasPrefix(got, "listening") {
		t.Errorf("uid %d's second reuseport listener: %s", nobody, got)
	}
}

// list: ls shows the granted listener, and no released socket.
func (u *usersFixture) list(t *testing.T) {
	c := &Client{Path: u.d.sock}
	gs, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range gs {
		if g.Local.Port() == 80 && g.UID == nobody && g.PID == int32(u.web.cmd.Process.Pid) && g.Listen && g.Grant == 1 {
			found = true
		}
		if g.Local.Port() >= 40000 && g.Local.Port() <= 40019 {
			t.Errorf("a released hog socket is still listed: %+v", g)
		}
	}
	if !found {
		t.Errorf("ls does not show the port-80 listener of pid %d: %+v", u.web.cmd.Process.Pid, gs)
	}
}

// reload: SIGHUP loads a new policy, keeps granted sockets, and refuses a broken policy.
func (u *usersFixture) reload(t *testing.T) {
	before := u.run(t, another, "request", u.d.sock, "tcp", "127.0.0.1:9090")
	if got := before.line(); !strings.HasPrefix(got, "denied") {
		t.Fatalf("before reload: %s", got)
	}
	before.stop()
	n := len(u.d.auditLines(t))
	u.d.writePolicy(t, basePolicy+"\n[[grant]]\nuids = [65533]\nproto = \"tcp\"\naddress = \"127.0.0.1\"\nports = 9090\n")
	u.d.cmd.Process.Signal(syscall.SIGHUP)
	u.d.waitAudit(t, "reload", "reload", n)
	after := u.run(t, another, "request", u.d.sock, "tcp", "127.0.0.1:9090")
	if got := after.line(); got != "granted 127.0.0.1:9090" {
		t.Errorf("after reload: %s", got)
	}
	// Granted sockets were not dropped.
	if got := ask(t, u.ns, "127.0.0.1:80"); got != fmt.Sprintf("uid=%d pid=%d", nobody, u.web.cmd.Process.Pid) {
		t.Errorf("port 80 after reload: %q", got)
	}
	// A broken policy is refused; the last good one stays.
	n = len(u.d.auditLines(t))
	u.d.writePolicy(t, "[[grant]]\nproto = \"sctp\"\n")
	u.d.cmd.Process.Signal(syscall.SIGHUP)
	u.d.waitAudit(t, "reload", "error", n)
	after.stop()
	still := u.run(t, another, "request", u.d.sock, "tcp", "127.0.0.1:9090")
	if got := still.line(); got != "granted 127.0.0.1:9090" {
		t.Errorf("after a broken reload: %s, want the last good policy's grant", got)
	}
}

// auditAndMetrics: every decision is audited with its fields; the metrics count them and pass promtool.
func (u *usersFixture) auditAndMetrics(t *testing.T) {
	decisions := map[string]int{}
	for _, l := range u.d.auditLines(t) {
		if l["msg"] != "request" {
			continue
		}
		peer, _ := l["peer"].(map[string]any)
		if l["time"] == nil || peer["uid"] == nil || peer["pid"] == nil || peer["gid"] == nil || l["reason"] == nil || l["request"] == nil {
			t.Errorf("audit record lacks a field: %v", l)
		}
		decisions[l["decision"].(string)]++
	}
	// Grants: 1 listener, 5+5 hog, 2 group members, 2 after reload;
	// denials: 4 by policy, 20+2 by quota, 1 before reload; the one
	// error is the taken port.
	if decisions["grant"] < 15 || decisions["deny"] < 4+20+2+1 || decisions["error"] != 1 {
		t.Errorf("audit decisions %v", decisions)
	}
	var body string
	// By hand: net/http would dial from another thread, outside the namespace.
	if err := u.ns.Do(func() error {
		c, err := net.DialTimeout("tcp", u.d.metrics, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", u.d.metrics)
		b, err := io.ReadAll(c)
		body = string(b)
		return err
	}); err != nil {
		t.Fatalf("scraping the broker: %v", err)
	}
	for _, want := range []string{
		`tuple_broker_live_sockets{uid="65534"} 1`, // port 80; the rest ended with their subtests
		`tuple_broker_grant_max_sockets{address="127.0.0.1",grant="3",group="",ports="40000-40019",proto="tcp"} 5`,
		`tuple_broker_handler_panics_total 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
	if m := regexp.MustCompile(`tuple_broker_quota_denied_total\{uid="65534"\} (\d+)`).FindStringSubmatch(body); m == nil || atoi(m[1]) < 22 {
		t.Errorf("quota denials of uid 65534: %v, want at least 22", m)
	}
	// The exposition is valid by Prometheus's own linter.
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Missing(t, "promtool not installed (apt-get install prometheus)")
	}
	_, payload, _ := strings.Cut(body, "\r\n\r\n")
	lint := exec.Command(promtool, "check", "metrics")
	lint.Stdin = strings.NewReader(payload)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// Any port of a grant whose ports are all taken: the policy allows it, the
// kernel has no port left. The broker denied it as if no grant allowed
// it ("no grant for uid 65534 allows tcp 127.0.0.1"); it is a failure of
// an allowed request (audit "error"), with the errno.
func TestBrokerAnyPortNoneFree(t *testing.T) {
	ns := netnstest.New(t)
	d := startBroker(t, ns, "[[grant]]\nuids = [65534]\nproto = \"tcp\"\naddress = \"127.0.0.1\"\nports = \"41000-41001\"\n")
	err := ns.Do(func() error {
		for _, port := range []int{41000, 41001} {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			t.Cleanup(func() { unix.Close(fd) })
			if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, helper := bins(t)
	hog := start(t, ns, nobody, []string{helperEnv + "=hog"}, helper, d.sock, "127.0.0.1", "1")
	// The wire has one kind of refusal (the client's DeniedError); the
	// reason and the audit log tell the two apart.
	if got := hog.line(); got != "granted=0 denied=1" {
		t.Errorf("any port of a grant with none free: %q, want one refusal", got)
	}
	if got := hog.line(); !strings.Contains(got, "allowed by grant #1") || !strings.Contains(got, "no port of it is free") || !strings.Contains(got, "(EADDRINUSE)") {
		t.Errorf("the refusal: %q, want an allowed request that found no free port, with EADDRINUSE", got)
	}
	hog.stop()
	d.waitAudit(t, "request", "error", 0)
	for _, l := range d.auditLines(t) {
		if l["decision"] == "deny" {
			t.Errorf("audit record %v: the request was allowed, not denied", l)
		}
	}
}
