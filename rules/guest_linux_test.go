//go:build linux && amd64

package rules

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/tuple-net/tuple/kernelvm"
)

// guestCases bounds the work in each guest: 500 cases take 45-90 s of one
// core per kernel under TCG, so CI runs all three (.ci/run).
var guestCases = flag.Int("rules.guest-cases", 500, "situations TestKernelDifferentialInGuests generates in each guest kernel")

// TestKernelDifferentialInGuests runs TestKernelDifferential inside each
// kernel scripts/fetch-kernels fetched (5.10, 6.1, 6.12), booted under
// qemu with this test binary as the guest's program, the model following
// the guest's kernel version. It is opt-in (TUPLE_RULES_GUESTS=1, which
// .ci/run sets for its own step): under TCG each kernel takes a minute of
// one core.
func TestKernelDifferentialInGuests(t *testing.T) {
	if os.Getenv("TUPLE_RULES_IN_GUEST") == "1" {
		t.Skip("inside a guest")
	}
	if os.Getenv("TUPLE_RULES_GUESTS") != "1" {
		t.Skip("opt-in: TUPLE_RULES_GUESTS=1 boots each fetched kernel (minutes each under qemu TCG)")
	}
	dirs, _ := filepath.Glob(filepath.Join(kernelvm.CacheDir(), "*", "vmlinuz"))
	if len(dirs) == 0 {
		t.Skip("no kernels fetched (scripts/fetch-kernels)")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs the ip command in the guest")
	}
	seed := uint64(time.Now().UnixNano())
	if *seedFlag != 0 {
		seed = *seedFlag
	}
	summary := regexp.MustCompile(`(\d+) cases, (\d+) kernel checks in [^:]+: (\d+) agree, (\d+) disagree, (\d+) residual`)
	// The checks that agreed only once an unseen tick was allowed for
	// (agreesAcrossTick), shown even when the guest passed.
	ticked := regexp.MustCompile(`agreed once a whole second[^\n]*`)
	for _, vml := range dirs {
		dir := filepath.Dir(vml)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			// Guests run -test.parallel at a time (GOMAXPROCS by
			// default): each takes a core under TCG.
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			res, err := kernelvm.Run(ctx, kernelvm.Config{Kernel: vml, Modules: filepath.Join(dir, "modules"),
				Args: []string{"-test.run=^TestKernelDifferential$", "-test.v",
					fmt.Sprintf("-rules.cases=%d", *guestCases), fmt.Sprintf("-rules.seed=%d", seed)},
				Env: []string{"TUPLE_RULES_IN_GUEST=1"}, Tools: []string{ip}, Timeout: 30 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			m := summary.FindStringSubmatch(string(res.Stdout))
			if m == nil {
				t.Fatalf("%s: no summary (exit %d); output:\n%s\nconsole:\n%s", res.Release, res.ExitCode, res.Stdout, res.Console)
			}
			t.Logf("%s (%s, %v, seed %d): %s", res.Release, res.Accel, res.Duration.Round(time.Second), seed, m[0])
			if tick := ticked.Find(res.Stdout); tick != nil {
				t.Logf("%s: %s", res.Release, tick)
			}
			if res.ExitCode != 0 {
				t.Errorf("%s: the differential test failed in the guest (seed %d):\n%s", res.Release, seed, res.Stdout)
			}
		})
	}
}
