//go:build !linux

package cli

import "runtime"

// hostRelease names the host's system where there is no uname -r to read.
func hostRelease() string { return runtime.GOOS }
