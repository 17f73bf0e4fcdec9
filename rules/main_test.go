package rules

import (
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/leakcheck"
)

func TestMain(m *testing.M) {
	// The Go runtime opens its poller's two descriptors (epoll, eventfd) at
	// the first timer, which the test framework's timeout starts inside
	// m.Run; start one first so they count as already open.
	time.Sleep(time.Microsecond)
	leakcheck.Main(m)
}
