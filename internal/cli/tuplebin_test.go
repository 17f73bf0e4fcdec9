package cli

import (
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/tuple-net/tuple/internal/testenv"
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
	bin, dir, err := testenv.BuildTuple("tuple-cli-test-")
	tupleBinDir = dir
	return bin, err
}

func removeTupleBin() {
	if tupleBinDir != "" {
		os.RemoveAll(tupleBinDir)
	}
}
