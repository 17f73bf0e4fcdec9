// Package reusegroup shows the SO_REUSEPORT groups of a host: for each
// group its members (the processes and descriptors holding them, their
// uid), each member's index in the kernel's array (what the kernel's hash
// and a steering program choose by), its accept queue, and the program
// attached to the group.
//
// It joins a socket table snapshot (package socktab: owners, queues) with
// the kernel's group records (package sockfacts.ReadGroups, a BPF socket
// iterator). Where the iterator cannot run (not root, no BTF), groups are
// formed from the table alone (same protocol, address, port and uid, with
// SO_REUSEPORT) and index, group id and program are stated as unknown with
// the reason.
package reusegroup
