package lab

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/netns"
	"github.com/tuple-net/tuple/rules"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and switch uids (CI runs as root)")
	}
}

// parseOne parses text (a file t.lab) and returns its first scenario.
func parseOne(t *testing.T, text string) Scenario {
	t.Helper()
	scs, err := Parse("t.lab", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return scs[0]
}

// runOne runs the first scenario of text with the default Runner.
func runOne(t *testing.T, text string) ScenarioResult {
	t.Helper()
	var r Runner
	res, err := r.Run(context.Background(), parseOne(t, text))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestBuiltinLibrary runs every built-in scenario on this kernel: every
// expectation must be met by the kernel and the rules model must agree
// with the kernel on every line it predicts.
func TestBuiltinLibrary(t *testing.T) {
	requireRoot(t)
	var r Runner
	start := time.Now()
	lines := 0
	for _, g := range Groups() {
		text, _ := Builtin(g)
		scs, err := Parse(BuiltinFile(g), text)
		if err != nil {
			t.Fatal(err)
		}
		for _, sc := range scs {
			t.Run(g+"/"+sc.Name, func(t *testing.T) {
				res, err := r.Run(context.Background(), sc)
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Results) != len(sc.Steps) {
					t.Errorf("%d results for %d steps", len(res.Results), len(sc.Steps))
				}
				for _, x := range res.Results {
					lines++
					if !x.KernelMet() {
						t.Errorf("%s:%d %s %s: kernel %s, the line expects %s", x.File, x.Line, x.Socket, x.Op, x.Kernel, x.Expect)
					}
					if !x.ModelAgreed() {
						t.Errorf("%s:%d %s %s: model %s, kernel %s (%s)", x.File, x.Line, x.Socket, x.Op, x.Model, x.Kernel, x.Why)
					}
				}
			})
		}
	}
	t.Logf("whole built-in library: %d lines in %.2fs", lines, time.Since(start).Seconds())
}

// TestRunReportsDisagreement checks the verdict logic against the real
// kernel with a model that is wrong on purpose, and a wrong expectation.
func TestRunReportsDisagreement(t *testing.T) {
	requireRoot(t)
	sc := parseOne(t, `[x]
A socket tcp4
A bind 127.0.0.1:7000 => ok
B socket tcp4
B bind 127.0.0.1:7000 => ok
C socket tcp4
C bind 127.0.0.1:7001
`)
	calls := 0
	r := Runner{Predict: func(w rules.World, s rules.Socket, op rules.Op) rules.Outcome {
		calls++
		if calls == 2 && len(w.Sockets) != 1 {
			t.Errorf("second bind: model saw %d sockets, want the first one (bound)", len(w.Sockets))
		}
		return rules.Outcome{Err: syscall.EACCES, Why: "wrong on purpose"}
	}}
	res, err := r.Run(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	type v struct {
		kernel, model string
		ok            bool
	}
	want := []v{{"ok", "", true}, {"ok", "EACCES", false}, {"ok", "", true}, {"EADDRINUSE", "EACCES", false}, {"ok", "", true}, {"ok", "EACCES", false}}
	for i, x := range res.Results {
		if got := (v{x.Kernel, x.Model, x.OK}); got != want[i] {
			t.Errorf("line %d: got %+v, want %+v", x.Line, got, want[i])
		}
	}
	if res.OK() {
		t.Error("scenario with disagreements reported ok")
	}
	if w := res.Results[3].Why; w != "wrong on purpose" {
		t.Errorf("why = %q", w)
	}
}

// TestRunFailedSysctl runs sysctl lines the kernel refuses: an inverted
// ip_local_port_range (EINVAL) and a key no kernel has (ENOENT). Without
// => RESULT each is a failed line saying what the kernel said, in words;
// with the error expected it is ok; the scenario runs on either way, from
// the setting the kernel kept.
func TestRunFailedSysctl(t *testing.T) {
	requireRoot(t)
	res := runOne(t, `[bad-sysctls]
sysctl net.ipv4.ip_local_port_range=40001 40000
sysctl net.ipv4.nosuch=1
sysctl net.ipv4.ip_local_port_range=40001 40000 => EINVAL
sysctl net.ipv4.nosuch=1 => ENOENT
sysctl net.ipv4.ip_local_port_range=40000 40000
A socket tcp4
A bind 127.0.0.1:0 => ok
`)
	checkLines(t, res, []lineWant{
		{"EINVAL", false, "EINVAL (invalid argument): the kernel refused net.ipv4.ip_local_port_range=40001 40000"},
		{"ENOENT", false, "ENOENT (no such file or directory): the namespace has no net.ipv4.nosuch"},
		{"EINVAL", true, "EINVAL (invalid argument)"},
		{"ENOENT", true, "ENOENT (no such file or directory)"},
		{"ok", true, ""},
		{"ok", true, ""},
		{"ok", true, ""},
	})
	if res.OK() {
		t.Error("a scenario whose sysctls the kernel refused reported ok")
	}
	if l := res.Results[6].Local; l != "127.0.0.1:40000" {
		t.Errorf("bind(0) took %q, want 127.0.0.1:40000 (the range line 6 set)", l)
	}
}

// lineWant is what one line of a run must show: the kernel's result,
// whether the line is ok, and how its Why starts ("": no Why).
type lineWant struct {
	kernel string
	ok     bool
	why    string
}

// checkLines checks res's lines against want, in order.
func checkLines(t *testing.T, res ScenarioResult, want []lineWant) {
	t.Helper()
	if len(res.Results) != len(want) {
		t.Fatalf("%d results, want %d", len(res.Results), len(want))
	}
	for i, x := range res.Results {
		if x.Kernel != want[i].kernel || x.OK != want[i].ok || !strings.HasPrefix(x.Why, want[i].why) || want[i].why == "" && x.Why != "" {
			t.Errorf("line %d %s: kernel %s, ok %v, why %q; want %s, %v, %q...", x.Line, x.Op, x.Kernel, x.OK, x.Why, want[i].kernel, want[i].ok, want[i].why)
		}
	}
}

// TestRunFailedSocket: a socket line the kernel refuses (an option it
// cannot apply) fails the scenario, with the errno in words, unless it
// expects the error; the lines on that socket then say there is none.
func TestRunFailedSocket(t *testing.T) {
	requireRoot(t)
	res := runOne(t, `[bad-socket]
A socket tcp4 dev=nosuchdev0
A bind 127.0.0.1:8000
B socket tcp4 dev=nosuchdev0 => ENODEV
B listen
`)
	checkLines(t, res, []lineWant{
		{"ENODEV", false, "ENODEV (no such device)"},
		{"EBADF", true, "no socket: its line failed (ENODEV)"},
		{"ENODEV", true, "ENODEV (no such device)"},
		{"EBADF", true, "no socket: its line failed (ENODEV)"},
	})
	if res.OK() {
		t.Error("a scenario whose socket line the kernel refused reported ok")
	}
}

// TestRunCancelLeavesNothing cancels a run mid-scenario and checks that
// no helper process (and so no namespace) is left.
func TestRunCancelLeavesNothing(t *testing.T) {
	requireRoot(t)
	// uid 0 and uid 1000: two helpers.
	cancelMidRun(t, "[x]\nA socket tcp4 uid=1000\nA bind 127.0.0.1:7000\nsleep 5s\n", 2, 5*time.Second, 3*time.Second)
}

// cancelMidRun runs scenario, waits (up to start) until its helpers are
// running, cancels, and wants Run to return context.Canceled within stop
// with no helper process left.
func cancelMidRun(t *testing.T, scenario string, helpers int, start, stop time.Duration) {
	t.Helper()
	sc := parseOne(t, scenario)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var r Runner
	go func() {
		_, err := r.Run(ctx, sc)
		done <- err
	}()
	var pids []int
	for deadline := time.Now().Add(start); len(pids) < helpers && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		pids = helperPIDs(t)
	}
	if len(pids) != helpers {
		t.Fatalf("want %d helpers running, found %v", helpers, pids)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(stop):
		t.Fatal("Run did not return after cancel")
	}
	if left := helperPIDs(t); len(left) != 0 {
		t.Errorf("helpers left after cancel: %v", left)
	}
}

// helperPIDs lists this test binary's helper processes.
func helperPIDs(t *testing.T) []int {
	t.Helper()
	exe, _ := os.Executable()
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid := 0
		for _, c := range e.Name() {
			if c < '0' || c > '9' {
				pid = -1
				break
			}
			pid = pid*10 + int(c-'0')
		}
		if pid <= 0 {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if len(args) > 1 && args[0] == exe && args[1] == HelperCommand {
			// Zombies have an empty cmdline, so these are alive.
			out = append(out, pid)
		}
	}
	return out
}

// BenchmarkLibrary times the whole built-in library against an anchor
// measured in the same run: what a shell lab spends on namespaces alone
// (ip netns add, ip netns exec true, ip netns del per scenario).
func BenchmarkLibrary(b *testing.B) {
	requireRoot(b)
	var scs []Scenario
	for _, g := range Groups() {
		text, _ := Builtin(g)
		s, _ := Parse(BuiltinFile(g), text)
		scs = append(scs, s...)
	}
	var r Runner
	var lib, anchor time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		for _, sc := range scs {
			if _, err := r.Run(context.Background(), sc); err != nil {
				b.Fatal(err)
			}
		}
		lib += time.Since(start)
		start = time.Now()
		for range scs {
			name := "tuple-bench-anchor"
			for _, args := range [][]string{{"netns", "add", name}, {"netns", "exec", name, "true"}, {"netns", "del", name}} {
				if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
					b.Fatalf("ip %v: %v: %s", args, err, out)
				}
			}
		}
		anchor += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(lib.Seconds()/n, "library-s")
	b.ReportMetric(anchor.Seconds()/n, "ip-netns-anchor-s")
	b.ReportMetric(lib.Seconds()/anchor.Seconds(), "library/anchor")
	b.ReportMetric(float64(len(scs)), "scenarios")
}

// TestRunSyncsWorldFromKernel checks the world the model is given: sockets
// as the kernel reports them (uid, family, state, flags), the accepted
// child of a server, and the TIME_WAIT a close leaves.
func TestRunSyncsWorldFromKernel(t *testing.T) {
	requireRoot(t)
	sc := parseOne(t, `[x]
sysctl net.ipv4.ip_local_port_range=40000 40009
S server tcp4 127.0.0.1:8080 reuseport uid=1000
A socket tcp6 uid=2000
A connect [::ffff:127.0.0.1]:8080
B socket tcp4
B bind 10.0.0.7:0
A close
C socket udp4
C bind 127.0.0.1:@B
`)
	var seen []rules.World
	var selves []rules.Socket
	var ops []rules.Op
	r := Runner{Predict: func(w rules.World, s rules.Socket, op rules.Op) rules.Outcome {
		seen, selves, ops = append(seen, w), append(selves, s), append(ops, op)
		return rules.Predict(w, s, op)
	}}
	res, err := r.Run(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Errorf("scenario not ok: %+v", res.Results)
	}
	// Predictions: S bind, S listen, A connect, B bind, C bind.
	if len(seen) != 5 {
		t.Fatalf("%d predictions, want 5", len(seen))
	}
	host := seen[0].Host
	if host.EphemeralRange != (inet.PortRange{Lo: 40000, Hi: 40009}) {
		t.Errorf("host range %v, want the sysctl's 40000-40009", host.EphemeralRange)
	}
	if !hasPrefix(host.Local, "127.0.0.0/8") || !hasPrefix(host.Local, "10.0.0.7/32") || !hasPrefix(host.Local, "::1/128") {
		t.Errorf("host local prefixes %v, want 127.0.0.0/8, ::1/128 and 10.0.0.7/32", host.Local)
	}
	if a := selves[2]; a.UID != 2000 || a.Family != inet.IPv6 || a.V6Only || a.State != rules.Unbound {
		t.Errorf("A before connect: %+v", a)
	}
	if src := ops[2].Source.Unmap().String(); src != "127.0.0.1" {
		t.Errorf("A's connect: source %q, want the kernel's route choice 127.0.0.1", ops[2].Source)
	}
	if w := seen[2]; len(w.Sockets) != 1 || w.Sockets[0].State != rules.Listen || w.Sockets[0].UID != 1000 || !w.Sockets[0].ReusePort {
		t.Errorf("world at A's connect: %+v, want S listening, uid 1000, reuseport", w.Sockets)
	}
	// At B's bind: S, A connected (port from connect) and S's accepted child.
	w := seen[3]
	if len(w.Sockets) != 3 {
		t.Fatalf("world at B's bind: %+v, want S, A and the child", w.Sockets)
	}
	a, child := w.Sockets[1], w.Sockets[2]
	if a.State != rules.Connected || !a.PortFromConnect || a.Local.Addr().String() != "::ffff:127.0.0.1" || a.Local.Port() < 40000 || a.Local.Port() > 40009 {
		t.Errorf("A after connect: %+v", a)
	}
	if child.State != rules.Connected || child.UID != 1000 || !child.ReusePort || child.Local.String() != "127.0.0.1:8080" || child.Remote.Port() != a.Local.Port() {
		t.Errorf("accepted child: %+v", child)
	}
	// At C's bind: S, B bound, and A's TIME_WAIT; the child is gone.
	w = seen[4]
	if len(w.Sockets) != 3 {
		t.Fatalf("world at C's bind: %+v, want S, B and A's TIME_WAIT", w.Sockets)
	}
	b, tw := w.Sockets[1], w.Sockets[2]
	if b.State != rules.Bound || b.Local.Addr().String() != "10.0.0.7" || b.PortFromConnect {
		t.Errorf("B after bind: %+v", b)
	}
	if tw.State != rules.TimeWait || tw.UID != 2000 || tw.Local != a.Local || !tw.TWTimestamps || tw.TWAge <= 0 {
		t.Errorf("A's TIME_WAIT: %+v", tw)
	}
	if op := res.Results[len(res.Results)-1]; op.Op != "bind 127.0.0.1:@B" || !strings.HasSuffix(op.Local, ":"+strconv.Itoa(int(b.Local.Port()))) {
		t.Errorf("@B did not resolve to B's port %d: %+v", b.Local.Port(), op)
	}
}

func hasPrefix(ps []netip.Prefix, want string) bool {
	for _, p := range ps {
		if p.String() == want {
			return true
		}
	}
	return false
}

// The kernel counts a UDP port's slot over every namespace that shares its
// hash table, so another namespace's sockets could move a scenario past
// ten sockets in a slot and with it the kernel's answer: udp-ten-on-a-port
// failed once that way beside other packages' tests. With a UDP socket of
// another namespace in every slot, the lab's answers stay its own.
func TestLabUDPSlotsAreItsOwn(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat(sysctlPath("net.ipv4.udp_child_hash_entries")); err != nil {
		t.Skip("this kernel (before 6.2) has one UDP hash table for every namespace: the lab cannot have its own")
	}
	b, err := os.ReadFile(sysctlPath("net.ipv4.udp_hash_entries"))
	if err != nil {
		t.Fatal(err)
	}
	slots, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	slots = max(slots, -slots)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if slots == 0 || slots > 40000 || uint64(slots)+1000 > lim.Cur {
		t.Skipf("a socket in each of %d UDP slots needs more descriptors than RLIMIT_NOFILE %d", slots, lim.Cur)
	}
	// One socket on each of slots consecutive ports fills every slot of
	// the shared table, whatever this namespace's hash offset.
	var fds []int
	t.Cleanup(func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	})
	err = netns.Fresh(func() error {
		if err := exec.Command("ip", "link", "set", "lo", "up").Run(); err != nil {
			return err
		}
		for p := 20000; p < 20000+slots; p++ {
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("filling the shared UDP table: %v", err)
	}
	text, _ := Builtin("udp")
	scs, err := Parse(BuiltinFile("udp"), text)
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, sc := range scs {
		if sc.Name != "udp-ten-on-a-port" && sc.Name != "udp-eleven-on-a-port" {
			continue
		}
		ran++
		var r Runner
		res, err := r.Run(context.Background(), sc)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range res.Results {
			if !x.KernelMet() || !x.ModelAgreed() {
				t.Errorf("%s:%d %s %s beside a full shared table: kernel %s, expected %s, model %s (%s)", x.File, x.Line, x.Socket, x.Op, x.Kernel, x.Expect, x.Model, x.Why)
			}
		}
	}
	if ran != 2 {
		t.Fatalf("ran %d of the two crowded-port scenarios: renamed?", ran)
	}
}
