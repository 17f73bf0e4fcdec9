//go:build !linux

package socktab

import (
	"context"
	"fmt"
	"runtime"
)

func snapshot(ctx context.Context, q Query) (*Table, error) {
	return nil, fmt.Errorf("socktab: %w on %s/%s (needs Linux sock_diag or procfs)", ErrNotSupported, runtime.GOOS, runtime.GOARCH)
}
