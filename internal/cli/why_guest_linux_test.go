//go:build linux && amd64

package cli

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/guesttest"
	"github.com/tuple-net/tuple/kernelvm"
)

// TestWhyDifferentialInGuests runs TestWhyDifferential (and alsoInGuests)
// inside each fetched kernel (5.10, 6.1, 6.12; guesttest, opt-in: TUPLE_WHY_GUESTS=1): `tuple
// why` reads the guest's own table and facts and predicts, and the
// guest's kernel answers. TUPLE_DIFF_CASES and TUPLE_DIFF_SEED pass on.
// alsoInGuests are the tests the guests run beside TestWhyDifferential,
// each of which must end in the guest's verbose output.
var alsoInGuests = []string{"TestWhyScopedAddressesMatchKernel", "TestWhyRouteBySourceMatchesKernel"}

func TestWhyDifferentialInGuests(t *testing.T) {
	summary := regexp.MustCompile(`differential: (\d+) cases, (\d+) agree, (\d+) disagree, (\d+) rest on an order no table shows \(seed \d+\)`)
	cfg := kernelvm.Config{
		Args: []string{"-test.run=^(TestWhyDifferential|TestWhyScopedAddressesMatchKernel|TestWhyRouteBySourceMatchesKernel)$", "-test.v", "-test.count=1"},
		Env: []string{fmt.Sprintf("TUPLE_DIFF_CASES=%d", diffEnv("TUPLE_DIFF_CASES", 120)),
			fmt.Sprintf("TUPLE_DIFF_SEED=%d", diffEnv("TUPLE_DIFF_SEED", 1))},
		Tools: []string{"ip", "ss", "sysctl"},
	}
	guesttest.Run(t, "TUPLE_WHY_GUESTS", cfg, func(t *testing.T, res kernelvm.Result) {
		m := summary.FindSubmatch(res.Stdout)
		if m == nil {
			t.Fatalf("%s: no summary (exit %d); output:\n%s\nconsole:\n%.4000s", res.Release, res.ExitCode, res.Stdout, res.Console)
		}
		t.Logf("%s (%s, %v): %s", res.Release, res.Accel, res.Duration.Round(time.Second), m[0])
		for _, name := range alsoInGuests {
			if end := regexp.MustCompile(`--- (PASS|FAIL|SKIP): ` + name + `\b`).Find(res.Stdout); end == nil {
				t.Errorf("%s: %s did not run; output:\n%s", res.Release, name, res.Stdout)
			} else {
				t.Logf("%s: %s", res.Release, end)
			}
		}
		if res.ExitCode != 0 {
			t.Errorf("%s: the differential test failed in the guest:\n%s", res.Release, res.Stdout)
		}
	})
}
