package dial

import (
	"net"
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
)

func TestMain(m *testing.M) {
	// The Go runtime opens its network poller's descriptors (epoll and an
	// eventfd) on first use and keeps them; open them before leakcheck
	// counts so they are not reported as leaks.
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
	}
	leakcheck.Main(m)
}
