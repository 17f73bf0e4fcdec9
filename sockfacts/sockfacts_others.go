//go:build !linux

package sockfacts

import (
	"fmt"
	"runtime"
)

// Read needs Linux.
func Read(proto Proto) ([]Sock, error) {
	return nil, fmt.Errorf("%w on %s/%s", ErrNotSupported, runtime.GOOS, runtime.GOARCH)
}

// UnprivilegedCause: off Linux the iterator does not exist at all.
func UnprivilegedCause() string {
	return fmt.Sprintf("the BPF socket iterator needs Linux, not %s/%s", runtime.GOOS, runtime.GOARCH)
}
