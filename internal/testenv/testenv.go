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

// BuildTuple builds cmd/tuple, and cmd/tupled beside it (tuple hands it
// exporter and broker --metrics), into a new directory every uid can read
// (tests run it as other users too) and returns tuple's path and the
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
	build := exec.Command(goTool, "build", "-o", dir+string(filepath.Separator),
		"github.com/tuple-net/tuple/cmd/tuple", "github.com/tuple-net/tuple/cmd/tupled")
	if out, err := build.CombinedOutput(); err != nil {
		return "", dir, fmt.Errorf("go build cmd/tuple cmd/tupled: %v: %s", err, out)
	}
	return filepath.Join(dir, "tuple"), dir, nil
}
