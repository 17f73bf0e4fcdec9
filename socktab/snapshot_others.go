//go:build !linux

package socktab

import (
	"context"
	"fmt"
	"runtime"

	"github.com/tuple-net/tuple/inet"
)

func snapshot(ctx context.Context, q Query) (*Table, error) {
	return nil, fmt.Errorf("socktab: %w on %s/%s (needs Linux sock_diag or procfs)", inet.ErrUnsupported, runtime.GOOS, runtime.GOARCH)
}

// boundOnlySearch holds nothing where no table is read. It is not of size
// zero, so two searches are two addresses, as on Linux.
//
//lint:ignore U1000 BoundOnlySearch holds one on every OS; only Linux makes the search
type boundOnlySearch struct{ _ byte }
