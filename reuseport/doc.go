// Package reuseport steers new connections inside a SO_REUSEPORT group and
// moves a closing member's connections to a live one.
//
// A reuseport group is every listening socket of one uid on the same
// address and port with SO_REUSEPORT set; the kernel picks one member per
// new connection (per SYN). By default it hashes the four-tuple. A program
// attached to any member replaces that choice for the whole group:
//
//   - cpu: a classic BPF program (SO_ATTACH_REUSEPORT_CBPF) returning the
//     CPU that received the packet, so member i serves CPU i. The kernel
//     indexes members in the order they called listen(), so members must be
//     created in CPU order and none closed; a CPU with no member falls back
//     to the hash.
//   - map: an eBPF sk_reuseport program (SO_ATTACH_REUSEPORT_EBPF) over a
//     REUSEPORT_SOCKARRAY, driven by a Supervisor that places, drains
//     and replaces members by index. The program picks among the live
//     indices by the kernel's hash; a drained member receives no new
//     connection but keeps what it already queued.
//
// Migration: when a member closes, the kernel resets the connections in its
// accept queue and drops its half-open ones, unless net.ipv4.tcp_migrate_req
// is 1 (Linux 5.14+) or the group's program is loaded as
// BPF_SK_REUSEPORT_SELECT_OR_MIGRATE; then they move to a live member, all
// but a handshake finishing at the instant of the close, which the kernel
// still resets (docs/reuseport.md).
// AttachMigrate attaches a program that does only that, keeping the hash
// choice; a Supervisor made with Migrate set does both.
//
// Programs are built at run time (x/net/bpf for classic BPF, cilium/ebpf's
// asm package for eBPF): nothing is compiled ahead. Loading eBPF needs
// CAP_BPF (root); classic BPF needs no privilege. Elsewhere than Linux
// every function fails with an error wrapping inet.ErrUnsupported.
//
// Example, four members with a supervisor that can drain one:
//
//	m, err := reuseport.NewSupervisor(4, reuseport.SupervisorOptions{Migrate: true})
//	group, err := dial.ListenGroup(ctx, "tcp", ":8080", 4, dial.SteerMap(m))
//	...
//	m.Drain(2) // member 2 gets no new connection; accept what it holds, then close it
package reuseport
