//go:build !linux

package load

import (
	"net"
	"syscall"
	"time"
)

// cpuTime is not measured off Linux; the report shows 0.
func cpuTime() time.Duration { return 0 }

// peerGone is not known off Linux: the sink keeps connections until it ends.
func peerGone(net.Conn) bool { return false }

// lingerZero: off Linux connections get SO_LINGER 0 only as they close.
func lingerZero(_, _ string, _ syscall.RawConn) error { return nil }
