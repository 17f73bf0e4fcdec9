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
