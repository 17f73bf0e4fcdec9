// Package testenv decides what a test does when something it needs from
// the machine is missing.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// BuildTuple builds cmd/tuple into a new directory every uid can read (tests
// run it as other users too) and returns the binary's path and the
// directory, which the caller removes after its tests. The go tool is found
// on PATH, where `go test` puts the one running the tests.
func BuildTuple(dirPrefix string) (bin, dir string, err error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", "", fmt.Errorf("building tuple: %w", err)
	}
	if dir, err = os.MkdirTemp("", dirPrefix); err != nil {
		return "", "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", dir, err
	}
	bin = filepath.Join(dir, "tuple")
	if out, err := exec.Command(goTool, "build", "-o", bin, "github.com/tuple-net/tuple/cmd/tuple").CombinedOutput(); err != nil {
		return "", dir, fmt.Errorf("go build cmd/tuple: %v: %s", err, out)
	}
	return bin, dir, nil
}
