//go:build !unix

package handover

import (
	"context"
	"fmt"
	"net"
	"runtime"
)

func notSupported() error {
	return fmt.Errorf("%w on %s/%s", ErrNotSupported, runtime.GOOS, runtime.GOARCH)
}

// Takeover needs a Unix system.
type Takeover struct{ Listeners []net.Listener }

// Take needs a Unix system.
func Take(ctx context.Context, path string) (*Takeover, error) { return nil, notSupported() }

func (t *Takeover) Ready(ctx context.Context) error { return notSupported() }
func (t *Takeover) Close() error                    { return nil }

// Offer needs a Unix system.
type Offer struct{}

// Listen needs a Unix system.
func Listen(path string) (*Offer, error) { return nil, notSupported() }

func (o *Offer) Serve(ctx context.Context, lns []net.Listener, stop func()) error {
	return notSupported()
}
func (o *Offer) Path() string { return "" }
func (o *Offer) Close() error { return nil }
