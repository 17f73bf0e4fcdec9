// Package testenv decides what a test does when something it needs from
// the machine is missing.
package testenv

import (
	"os"
	"testing"
)

// Missing skips t with reason on a developer's machine, but fails it when
// the CI environment variable is set: CI installs every tool the tests use
// (.ci/run), so there a missing one is a broken install step, not a reason
// to skip.
func Missing(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: .ci/run should have provided it)", reason)
	}
	t.Skip(reason)
}
