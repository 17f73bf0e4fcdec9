package lab

import (
	"os"
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
)

// TestMain lets the test binary serve as the runner's helper: the runner
// re-executes os.Executable() with HelperCommand.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == HelperCommand {
		os.Exit(HelperMain(os.Args[2:]))
	}
	// The runner uses Go's network poller, whose epoll and eventfd
	// descriptors live as long as the process; start it before leakcheck
	// counts descriptors so they are not mistaken for a leak.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	leakcheck.Main(m)
}
