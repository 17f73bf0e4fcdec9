package lab

import (
	"os"
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
	"github.com/tuple-net/tuple/internal/reexec"
)

// TestMain lets the test binary serve as the runner's helper: the runner
// re-executes os.Executable() as HelperCommand (internal/reexec).
func TestMain(m *testing.M) {
	reexec.Main()
	// The runner uses Go's network poller, whose epoll and eventfd
	// descriptors live as long as the process; start it before leakcheck
	// counts descriptors so they are not mistaken for a leak.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	leakcheck.Main(m)
}
