//go:build !linux

package netns

import (
	"fmt"
	"runtime"

	"github.com/tuple-net/tuple/inet"
)

// RunDir is where `ip netns` keeps named namespaces (Linux).
const RunDir = "/run/netns"

func unsupported() error {
	return fmt.Errorf("network namespaces on %s: %w", runtime.GOOS, inet.ErrUnsupported)
}

// List is Linux only.
func List(procRoot, runDir string) ([]Namespace, error) { return nil, unsupported() }

// Resolve is Linux only.
func Resolve(spec Spec, procRoot, runDir string) ([]Namespace, error) { return nil, unsupported() }

// Do is Linux only.
func Do(path string, fn func() error) error { return unsupported() }

// GoHere is Linux only.
func GoHere(fn func() error) (wait func() error) { return unsupported }

// Fresh needs Linux.
func Fresh(fn func() error) error { return unsupported() }

// WithOwnUDPTable needs Linux.
func WithOwnUDPTable(fn func() error) error { return unsupported() }
