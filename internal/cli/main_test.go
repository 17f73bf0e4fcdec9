package cli

import (
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
	"github.com/tuple-net/tuple/internal/reexec"
)

// TestMain dispatches helpers (internal/reexec) when a command run in
// process re-executes the test binary, then runs the tests.
func TestMain(m *testing.M) {
	reexec.Main()
	leakcheck.Main(m, removeTupleBin)
}
