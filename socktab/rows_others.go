//go:build !linux

package socktab

import (
	"context"
	"fmt"
	"runtime"

	"github.com/tuple-net/tuple/inet"
)

func snapshotRows(ctx context.Context, q Query) (*RowTable, error) {
	return nil, fmt.Errorf("socktab: %w on %s/%s (needs Linux sock_diag or procfs)", inet.ErrUnsupported, runtime.GOOS, runtime.GOARCH)
}
