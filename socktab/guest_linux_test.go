//go:build linux && amd64

package socktab

import (
	"regexp"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/guesttest"
	"github.com/tuple-net/tuple/kernelvm"
)

// TestTablesInGuests runs this package's tests inside each fetched kernel
// (5.10, 6.1, 6.12; guesttest, opt-in: TUPLE_SOCKTAB_GUESTS=1). Before 6.8
// inet_diag does not list bound-only TCP sockets and the table finds them
// among processes' descriptors, in one namespace or across several: the
// tests that hold the table to the sockets they made must pass there too,
// and are named, so one that skipped would not go unnoticed.
func TestTablesInGuests(t *testing.T) {
	cfg := kernelvm.Config{Args: []string{"-test.v", "-test.count=1"}, Tools: []string{"ip", "ss", "sleep", "cat", "true"}, Timeout: 10 * time.Minute}
	guesttest.Run(t, "TUPLE_SOCKTAB_GUESTS", cfg, func(t *testing.T, res kernelvm.Result) {
		if res.ExitCode != 0 {
			t.Fatalf("%s: the tests failed in the guest (exit %d):\n%s", res.Release, res.ExitCode, res.Stdout)
		}
		passed := regexp.MustCompile(`(?m)^--- PASS: (\S+)`).FindAllSubmatch(res.Stdout, -1)
		t.Logf("%s (%s, %v): %d tests passed", res.Release, res.Accel, res.Duration.Round(time.Second), len(passed))
		for _, must := range []string{"TestBoundOnlyAcrossNamespaces", "TestSnapshotAcrossNamespaces", "TestSnapshotMatchesKernel", "TestSnapshotRows"} {
			if !regexp.MustCompile(`(?m)^--- PASS: ` + must + `\b`).Match(res.Stdout) {
				t.Errorf("%s: %s did not pass in the guest:\n%s", res.Release, must, res.Stdout)
			}
		}
	})
}
