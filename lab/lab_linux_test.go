package lab

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/rules"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and switch uids (CI runs as root)")
	}
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
			res, err := r.Run(context.Background(), sc)
			if err != nil {
				t.Errorf("%s [%s]: %v", g, sc.Name, err)
				continue
			}
			if len(res.Results) != len(sc.Steps) {
				t.Errorf("%s [%s]: %d results for %d steps", g, sc.Name, len(res.Results), len(sc.Steps))
			}
			for _, x := range res.Results {
				lines++
				if !x.KernelMet() {
					t.Errorf("%s:%d [%s] %s %s: kernel %s, the line expects %s", x.File, x.Line, sc.Name, x.Socket, x.Op, x.Kernel, x.Expect)
				}
				if !x.ModelAgreed() {
					t.Errorf("%s:%d [%s] %s %s: model %s, kernel %s (%s)", x.File, x.Line, sc.Name, x.Socket, x.Op, x.Model, x.Kernel, x.Why)
				}
			}
		}
	}
	t.Logf("whole built-in library: %d lines in %.2fs", lines, time.Since(start).Seconds())
}

// TestRunReportsDisagreement checks the verdict logic against the real
// kernel with a model that is wrong on purpose, and a wrong expectation.
func TestRunReportsDisagreement(t *testing.T) {
	requireRoot(t)
	scs, err := Parse("t.lab", []byte(`[x]
A socket tcp4
A bind 127.0.0.1:7000 => ok
B socket tcp4
B bind 127.0.0.1:7000 => ok
C socket tcp4
C bind 127.0.0.1:7001
`))
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	r := Runner{Predict: func(w rules.World, s rules.Socket, op rules.Op) rules.Outcome {
		calls++
		if calls == 2 && len(w.Sockets) != 1 {
			t.Errorf("second bind: model saw %d sockets, want the first one (bound)", len(w.Sockets))
		}
		return rules.Outcome{Err: syscall.EACCES, Why: "wrong on purpose"}
	}}
	res, err := r.Run(context.Background(), scs[0])
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

// TestRunCancelLeavesNothing cancels a run mid-scenario and checks that
// no helper process (and so no namespace) is left.
func TestRunCancelLeavesNothing(t *testing.T) {
	requireRoot(t)
	scs, err := Parse("t.lab", []byte("[x]\nA socket tcp4 uid=1000\nA bind 127.0.0.1:7000\nsleep 5s\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var r Runner
	go func() {
		_, err := r.Run(ctx, scs[0])
		done <- err
	}()
	var pids []int
	for deadline := time.Now().Add(5 * time.Second); len(pids) < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		pids = helperPIDs(t)
	}
	if len(pids) != 2 {
		t.Fatalf("want 2 helpers (uid 0 and 1000) running, found %v", pids)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(3 * time.Second):
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
