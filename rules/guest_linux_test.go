//go:build linux && amd64

package rules

import (
	"flag"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/guesttest"
	"github.com/tuple-net/tuple/kernelvm"
)

// guestCases bounds the work in each guest: 500 cases take 45-90 s of one
// core per kernel under TCG, so CI runs all three (.ci/run).
var guestCases = flag.Int("rules.guest-cases", 500, "situations TestKernelDifferentialInGuests generates in each guest kernel")

// TestKernelDifferentialInGuests runs TestKernelDifferential inside each
// fetched kernel (5.10, 6.1, 6.12), the model following the guest's kernel
// version (guesttest; opt-in: TUPLE_RULES_GUESTS=1).
func TestKernelDifferentialInGuests(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if *seedFlag != 0 {
		seed = *seedFlag
	}
	summary := regexp.MustCompile(`(\d+) cases, (\d+) kernel checks in [^:]+: (\d+) agree, (\d+) disagree, (\d+) residual`)
	// The checks that agreed only once an unseen tick was allowed for
	// (agreesAcrossTick), shown even when the guest passed.
	ticked := regexp.MustCompile(`agreed once a whole second[^\n]*`)
	cfg := kernelvm.Config{
		Args: []string{"-test.run=^TestKernelDifferential$", "-test.v",
			fmt.Sprintf("-rules.cases=%d", *guestCases), fmt.Sprintf("-rules.seed=%d", seed)},
		Tools: []string{"ip"},
	}
	guesttest.Run(t, "TUPLE_RULES_GUESTS", cfg, func(t *testing.T, res kernelvm.Result) {
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
