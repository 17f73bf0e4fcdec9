package kernelvm

import (
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
)

func TestMain(m *testing.M) {
	Guest()
	leakcheck.Main(m)
}
