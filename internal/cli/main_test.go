package cli

import (
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
	"github.com/tuple-net/tuple/internal/reexec"
	"github.com/tuple-net/tuple/kernelvm"
)

// TestMain lets the test binary be a kernelvm guest's program
// (TestWhyDifferentialInGuests), dispatches helpers (internal/reexec) when
// a command run in process re-executes the test binary, then runs the
// tests.
func TestMain(m *testing.M) {
	kernelvm.Guest()
	reexec.Main()
	leakcheck.Main(m, removeTupleBin)
}
