package rules

import (
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
	"github.com/tuple-net/tuple/kernelvm"
)

// TestMain lets the test binary be a kernelvm guest's program
// (TestKernelDifferentialInGuests boots it under other kernels).
func TestMain(m *testing.M) {
	kernelvm.Guest()
	leakcheck.Main(m)
}
