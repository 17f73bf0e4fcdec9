//go:build !linux

package nat

import (
	"context"
	"fmt"
	"runtime"

	"github.com/tuple-net/tuple/sockopt"
)

func read(context.Context) (Snapshot, error) {
	return Snapshot{}, fmt.Errorf("reading NAT rules and conntrack on %s: %w", runtime.GOOS, sockopt.ErrNotSupported)
}
