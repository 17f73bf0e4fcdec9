//go:build !linux || !amd64

package kernelvm

import "context"

// Run is not supported here.
func Run(ctx context.Context, cfg Config) (Result, error) { return Result{}, ErrNotSupported }

// Guest does nothing here.
func Guest() {}
