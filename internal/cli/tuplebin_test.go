package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
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

// buildTuple builds cmd/tuple into a directory named for this process.
// leakcheck.Main ends the process, so the directory cannot be removed on the
// way out; instead each run removes the directories of runs that are gone.
func buildTuple() (string, error) {
	pruneOldBuilds()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("tuple-cli-test-%d", os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Readable by everyone: one test runs it as uid 65534.
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

func pruneOldBuilds() {
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), "tuple-cli-test-*"))
	for _, d := range old {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "tuple-cli-test-"))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			os.RemoveAll(d)
		}
	}
}
