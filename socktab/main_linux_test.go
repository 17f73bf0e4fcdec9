package socktab

import (
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
	"github.com/tuple-net/tuple/kernelvm"
)

func TestMain(m *testing.M) {
	kernelvm.Guest()
	leakcheck.Main(m)
}
