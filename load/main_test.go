package load

import (
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
	"github.com/tuple-net/tuple/internal/reexec"
)

// TestMain lets the test binary serve as its own load workers
// (internal/reexec), then runs the tests.
func TestMain(m *testing.M) {
	reexec.Main()
	leakcheck.Main(m)
}
