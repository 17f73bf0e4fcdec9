package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestICMPBudgetPaces: half the namespace's burst goes at once, then one
// probe per two of its messages a second; sysctls it cannot read give
// Linux's defaults.
func TestICMPBudgetPaces(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "sys", "net", "ipv4")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"icmp_msgs_per_sec": "100\n", "icmp_msgs_burst": "10\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := newICMPBudget(root)
	var slept []time.Duration
	b.sleepFor = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	for range 15 {
		if err := b.take(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// 5 at once (half of 10), then 10 more at 50 a second: 20 ms each,
	// less the little time the loop itself took.
	if len(slept) != 10 {
		t.Fatalf("15 probes slept %d times (%v), want 10", len(slept), slept)
	}
	for _, d := range slept {
		if d < 15*time.Millisecond || d > 20*time.Millisecond {
			t.Errorf("slept %v between probes, want about 20ms", d)
		}
	}

	def := newICMPBudget(filepath.Join(root, "nothing"))
	if def.perSec != defaultICMPPerSec/2 || def.burst != defaultICMPBurst/2 {
		t.Errorf("unreadable sysctls: %v a second, burst %v; want half of Linux's 1000 and 50", def.perSec, def.burst)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.sleepFor = sleepCtx
	b.tokens = 0
	if err := b.take(ctx); err == nil {
		t.Error("take with an ended context and no budget returned nil")
	}
}
