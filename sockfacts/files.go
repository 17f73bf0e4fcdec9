package sockfacts

import "sync/atomic"

// File is one descriptor of a process that refers to a socket: what
// /proc/PID/fd/FD -> socket:[INODE] says, read for every process at once by
// a BPF iterator over the tasks' file tables.
type File struct {
	PID   int32 // thread group id, in the initial pid namespace
	FD    int32
	Inode uint64 // the socket's inode, as inet_diag reports it
}

var useLoader atomic.Bool

// UseLoaderBTF makes SocketFiles load its program through cilium/ebpf's
// loader, for a process that decodes the kernel's BTF for the socket
// iterator anyway (who reads its port's records beside the owners): the
// raw scan as well would be the same work twice.
func UseLoaderBTF() { useLoader.Store(true) }
