//go:build !linux

package sockfacts

import (
	"fmt"
	"runtime"

	"github.com/tuple-net/tuple/inet"
)

// Read needs Linux.
func Read(proto inet.Proto) ([]Sock, error) {
	return nil, inet.Unsupported("the BPF socket iterator")
}

// UnprivilegedCause: off Linux the iterator does not exist at all.
func UnprivilegedCause() string {
	return fmt.Sprintf("the BPF socket iterator needs Linux, not %s/%s", runtime.GOOS, runtime.GOARCH)
}

// ReadGroups needs Linux.
func ReadGroups(proto inet.Proto) ([]Member, error) {
	return nil, fmt.Errorf("BPF socket iterator %w on %s/%s", inet.ErrUnsupported, runtime.GOOS, runtime.GOARCH)
}

// SocketFiles needs Linux.
func SocketFiles() ([]File, error) {
	return nil, fmt.Errorf("BPF socket iterator %w on %s/%s", inet.ErrUnsupported, runtime.GOOS, runtime.GOARCH)
}

// ReadAsync needs Linux.
func ReadAsync(proto inet.Proto, dst []Sock) (wait func() ([]Sock, error)) {
	return func() ([]Sock, error) { return Read(proto) }
}

// Reader needs Linux.
type Reader struct{}

// NewReader needs Linux.
func NewReader(proto inet.Proto, opts ...Option) (*Reader, error) {
	_, err := Read(proto)
	return nil, err
}

// Read needs Linux.
func (r *Reader) Read(dst []Sock) ([]Sock, error) {
	return nil, inet.Unsupported("the BPF socket iterator")
}

// ReadAsync needs Linux.
func (r *Reader) ReadAsync(dst []Sock) (wait func() ([]Sock, error)) {
	return func() ([]Sock, error) { return r.Read(dst) }
}

// Close does nothing.
func (r *Reader) Close() error { return nil }

// ReadPort needs Linux.
func ReadPort(proto inet.Proto, port uint16, opts ...Option) ([]Sock, error) { return Read(proto) }

// ReadPortAsync needs Linux.
func ReadPortAsync(proto inet.Proto, port uint16, opts ...Option) (wait func() ([]Sock, error)) {
	return func() ([]Sock, error) { return ReadPort(proto, port) }
}

// Scan needs Linux.
func (r *Reader) Scan(buf []byte, fn func(*Sock)) ([]byte, error) {
	return buf, inet.Unsupported("the BPF socket iterator")
}

// ScanAsync needs Linux.
func (r *Reader) ScanAsync(buf []byte, fn func(*Sock)) (wait func() ([]byte, error)) {
	return func() ([]byte, error) { return r.Scan(buf, fn) }
}

// Requests needs Linux.
func (r *Reader) Requests() int { return 0 }

// KnowsPortOrigin is false: nothing is read.
func (r *Reader) KnowsPortOrigin() bool { return false }
