package socktab

import (
	"os"
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
)

func TestMain(m *testing.M) {
	// The Go runtime opens its poller descriptors (epoll, eventfd) on first
	// use and keeps them; open them before leakcheck counts.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	leakcheck.Main(m)
}
