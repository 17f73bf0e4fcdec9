package sockfacts

// File is one descriptor of a process that refers to a socket: what
// /proc/PID/fd/FD -> socket:[INODE] says, read for every process at once by
// a BPF iterator over the tasks' file tables.
type File struct {
	PID   int32 // thread group id, in the initial pid namespace
	FD    int32
	Inode uint64 // the socket's inode, as inet_diag reports it
}
