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

// ReadGroups needs Linux.
func ReadGroups(proto Proto) ([]Member, error) {
	return nil, fmt.Errorf("%w on %s/%s", ErrNotSupported, runtime.GOOS, runtime.GOARCH)
}

// SocketFiles needs Linux.
func SocketFiles() ([]File, error) {
	return nil, fmt.Errorf("%w on %s/%s", ErrNotSupported, runtime.GOOS, runtime.GOARCH)
}

// ReadAsync needs Linux.
func ReadAsync(proto Proto) (wait func() ([]Sock, error)) {
	return func() ([]Sock, error) { return Read(proto) }
}
