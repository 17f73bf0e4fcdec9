// Package sockfacts reads facts about sockets that the kernel keeps but
// inet_diag does not report, with a BPF socket iterator (iter/tcp,
// iter/udp):
//
//   - SO_REUSEADDR, SO_REUSEPORT and IPV6_V6ONLY of every socket, TIME_WAIT
//     entries included (they keep the flags of the socket they replace),
//     without needing the owner's descriptor;
//   - whether a TCP port was picked by connect() (SOCK_CONNECT_BIND in
//     sk_userlocks, tw_connect_bind for TIME_WAIT; Linux 6.17+, unknown on
//     older kernels, where the rest is read alike), which decides whether a
//     later connect() may share the port;
//   - whether a TIME_WAIT entry saw peer timestamps (tw_ts_recent_stamp),
//     which decides whether its four-tuple can be reused.
//
// The program is written with cilium/ebpf's asm package; field offsets come
// from the running kernel's BTF (/sys/kernel/btf/vmlinux) at load time, so
// nothing is compiled ahead and nothing depends on one kernel build. The
// socket and task_file programs are loaded with bpf(2) from one scan of the
// raw BTF per process; cilium/ebpf's loader, which decodes the BTF's type
// graph (tens of milliseconds), is the fallback and loads the reuseport
// group program. The iterator walks the network namespace of the calling
// OS thread.
//
// Loading needs CAP_BPF and CAP_PERFMON (root). Without them, or on a kernel
// without BTF or these fields, Read returns an error wrapping
// inet.ErrUnsupported and callers fall back to stating the facts as unknown.
// The package's tests run in Linux 5.10, 6.1 and 6.12 under qemu too
// (TestFactsInGuests); docs/kernel-findings.md says what differs there.
package sockfacts
