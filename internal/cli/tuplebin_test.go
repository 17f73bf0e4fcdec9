package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// tupleBin is the tuple binary that tests run as a real process (in
// network namespaces). It is built once per test run, by the first test
// that needs it, so runs that skip those tests do not pay for the build.
var (
	tupleBin     string
	tupleBinErr  error
	tupleBinOnce sync.Once
)

// needTuple skips t unless it runs as root on Linux, and builds tuple.
func needTuple(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root on Linux to run tuple in network namespaces (CI runs as root)")
	}
	tupleBinOnce.Do(func() { tupleBin, tupleBinErr = buildTuple() })
	if tupleBinErr != nil {
		t.Fatalf("building tuple: %v", tupleBinErr)
	}
}

// tupleBinary builds tuple once (see needTuple) and returns its path.
func tupleBinary(t *testing.T) string {
	t.Helper()
	needTuple(t)
	return tupleBin
}

// tupleBinDir holds the built binary; TestMain removes it after the tests.
var tupleBinDir string

// buildTuple builds cmd/tuple into a directory everyone can read: one test
// runs it as uid 65534.
func buildTuple() (string, error) {
	dir, err := os.MkdirTemp("", "tuple-cli-test-")
	if err != nil {
		return "", err
	}
	tupleBinDir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "tuple")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/tuple-net/tuple/cmd/tuple")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cmd/tuple: %v: %s", err, out)
	}
	return bin, nil
}

func removeTupleBin() {
	if tupleBinDir != "" {
		os.RemoveAll(tupleBinDir)
	}
}
