package reuseport

import (
	"fmt"
	"syscall"
)

// Steering is how the kernel picks a group member for a new connection.
type Steering int

const (
	// SteerHash is the kernel's default: a hash of the four-tuple.
	SteerHash Steering = iota
	// SteerCPU sends a connection to the member whose index is the receiving CPU.
	SteerCPU
	// SteerMap lets a Supervisor choose the members by index.
	SteerMap
)

func (s Steering) String() string {
	switch s {
	case SteerHash:
		return "hash"
	case SteerCPU:
		return "cpu"
	case SteerMap:
		return "map"
	}
	return fmt.Sprintf("steering(%d)", int(s))
}

// ParseSteering parses "hash", "cpu" or "map".
func ParseSteering(s string) (Steering, error) {
	switch s {
	case "hash":
		return SteerHash, nil
	case "cpu":
		return SteerCPU, nil
	case "map":
		return SteerMap, nil
	}
	return 0, fmt.Errorf("steering %q: want hash, cpu or map", s)
}

// SupervisorOptions configure a Supervisor.
type SupervisorOptions struct {
	// Migrate loads the program as BPF_SK_REUSEPORT_SELECT_OR_MIGRATE, so a
	// closing member's queued and half-open connections move to a live
	// member (Linux 5.14+; a handshake finishing at the instant of the
	// close is still reset).
	Migrate bool
}

// control runs fn on the descriptor of c, returning Control's error first,
// then fn's.
func control(c syscall.Conn, fn func(fd uintptr) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(fd) }); err != nil {
		return err
	}
	return ferr
}
