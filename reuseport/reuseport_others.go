//go:build !linux

package reuseport

import (
	"syscall"

	"github.com/tuple-net/tuple/inet"
)

func notSupported() error {
	return inet.Unsupported("reuseport programs")
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
