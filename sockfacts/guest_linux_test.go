//go:build linux && amd64

package sockfacts

import (
	"regexp"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/guesttest"
	"github.com/tuple-net/tuple/kernelvm"
)

// TestFactsInGuests runs this package's tests inside each fetched kernel
// (5.10, 6.1, 6.12; guesttest, opt-in: TUPLE_SOCKFACTS_GUESTS=1): the
// iterator's programs load there, and what they read is checked against
// the guest's own sockets. On a kernel it does not load on, the guest says
// why (TestMain), and that kernel must be older than 5.10, the oldest
// docs/kernel-findings.md names.
func TestFactsInGuests(t *testing.T) {
	// A test that skips in a guest says why; one missing from the run
	// would go unnoticed, so the passes are named.
	passed := regexp.MustCompile(`(?m)^--- PASS: (\S+)`)
	unsupported := regexp.MustCompile(`sockfacts unsupported here: (.*)`)
	cfg := kernelvm.Config{Args: []string{"-test.v", "-test.count=1"}, Tools: []string{"ip"}, Timeout: 10 * time.Minute}
	guesttest.Run(t, "TUPLE_SOCKFACTS_GUESTS", cfg, func(t *testing.T, res kernelvm.Result) {
		if res.ExitCode != 0 {
			t.Fatalf("%s: the tests failed in the guest (exit %d):\n%s", res.Release, res.ExitCode, res.Stdout)
		}
		if m := unsupported.FindSubmatch(res.Stdout); m != nil {
			t.Logf("%s (%s, %v): %s", res.Release, res.Accel, res.Duration.Round(time.Second), m[0])
			if !regexp.MustCompile(`^([2-4]\.|5\.[0-9]\.)`).MatchString(res.Release) {
				t.Errorf("%s: the iterator does not load on a kernel it should: %s", res.Release, m[1])
			}
			return
		}
		var names []string
		for _, m := range passed.FindAllSubmatch(res.Stdout, -1) {
			names = append(names, string(m[1]))
		}
		t.Logf("%s (%s, %v): %d tests passed: %v", res.Release, res.Accel, res.Duration.Round(time.Second), len(names), names)
		for _, must := range []string{"TestReadAgainstKernel", "TestReadUDP", "TestReadGroupsAgainstKernel", "TestSocketFilesMatchesProc", "TestScanOwnerFacts"} {
			if !regexp.MustCompile(`(?m)^--- PASS: ` + must + `\b`).Match(res.Stdout) {
				t.Errorf("%s: %s did not pass in the guest:\n%s", res.Release, must, res.Stdout)
			}
		}
	})
}
