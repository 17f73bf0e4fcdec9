//go:build !linux

package sockfacts

import "github.com/tuple-net/tuple/inet"

// Read needs Linux.
func Read(proto inet.Proto) ([]Sock, error) {
	return nil, inet.Unsupported("the BPF socket iterator")
}
