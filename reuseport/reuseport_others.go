//go:build !linux

package reuseport

import (
	"fmt"
	"runtime"
	"syscall"
)

func notSupported() error {
	return fmt.Errorf("%w on %s/%s", ErrNotSupported, runtime.GOOS, runtime.GOARCH)
}

// AttachCPU needs Linux.
func AttachCPU(c syscall.Conn) error { return notSupported() }

// Detach needs Linux.
func Detach(c syscall.Conn) error { return notSupported() }

// AttachMigrate needs Linux.
func AttachMigrate(c syscall.Conn) error { return notSupported() }

// Supervisor needs Linux.
type Supervisor struct{}

// NewSupervisor needs Linux.
func NewSupervisor(size int, o SupervisorOptions) (*Supervisor, error) { return nil, notSupported() }

func (m *Supervisor) Attach(c syscall.Conn) error         { return notSupported() }
func (m *Supervisor) Size() int                           { return 0 }
func (m *Supervisor) Place(i int, c syscall.Conn) error   { return notSupported() }
func (m *Supervisor) Replace(i int, c syscall.Conn) error { return notSupported() }
func (m *Supervisor) Drain(i int) error                   { return notSupported() }
func (m *Supervisor) Live() []int                         { return nil }
func (m *Supervisor) ProgramID() (uint32, error)          { return 0, notSupported() }
func (m *Supervisor) Close() error                        { return nil }
