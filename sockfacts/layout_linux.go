package sockfacts

import (
	"fmt"

	"github.com/cilium/ebpf/btf"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/kversion"
)

// field is where one kernel struct member lives: byte offset and size, and
// for a bitfield its bit offset within the byte at off and its width.
type field struct {
	off, size  uint32
	bit, nbits uint32
	isBitfield bool
	// absent: an optional field this kernel does not have.
	absent bool
}

// bits is the field's value within the byte v copied from its offset.
func (f field) bits(v byte) byte {
	if !f.isBitfield {
		return v
	}
	return (v >> f.bit) & (1<<f.nbits - 1)
}

// layout is every kernel field the iterator reads, from the running
// kernel's BTF.
type layout struct {
	family, state, reuse, reusePort, v6only          field
	num, dport, daddr, rcvSaddr, v6Daddr, v6RcvSaddr field
	userlocks, twConnectBind, twTSRecentStamp        field
	twSubstate                                       field // TCP_FIN_WAIT2 for an orphan's entry
	// cookie is sock_common.skc_cookie, read where the
	// bpf_get_socket_cookie helper is not allowed (before 5.12); absent
	// elsewhere.
	cookie                                   field
	bindHash, twTB, fastreuse, fastreuseport field
	fastUID, fastRcvSaddr, fastV6RcvSaddr    field
	fastFamily, fastV6Only                   field
	// The socket's owner and device, as inet_diag reports them: the
	// context's uid (an iterator argument, one u64 slot each), the bound
	// ifindex, and the inode through sk_socket->file->f_inode.
	tcpUID, udpUID, boundDev           field
	skSocket, socketFile, fInode, iIno field
	// sockIno is i_ino's offset from a struct socket: a socket and its
	// inode are allocated together (struct socket_alloc, the kernel's
	// SOCK_INODE), so the inode number is one read away from sk_socket,
	// not three (socket->file->f_inode->i_ino). 0 where the kernel's BTF
	// has no socket_alloc: the program then goes through the file.
	sockIno uint32
}

// findField looks name up in the struct or union t, descending into
// anonymous members (the kernel's unions such as skc_portpair).
func findField(t btf.Type, name string, base btf.Bits) (field, bool) {
	var members []btf.Member
	switch c := btf.UnderlyingType(t).(type) {
	case *btf.Struct:
		members = c.Members
	case *btf.Union:
		members = c.Members
	default:
		return field{}, false
	}
	for _, m := range members {
		off := base + m.Offset
		if m.Name == name {
			if m.BitfieldSize != 0 {
				return field{off: uint32(off / 8), size: 1, bit: uint32(off % 8), nbits: uint32(m.BitfieldSize), isBitfield: true}, true
			}
			sz, err := btf.Sizeof(m.Type)
			if err != nil || off%8 != 0 {
				return field{}, false
			}
			return field{off: uint32(off / 8), size: uint32(sz)}, true
		}
		if m.Name == "" {
			if f, ok := findField(m.Type, name, off); ok {
				return f, true
			}
		}
	}
	return field{}, false
}

// structField finds structName.name in the kernel's BTF, checking its size
// (0: any) and that a bitfield lies within one byte.
func structField(spec *btf.Spec, structName, name string, size uint32) (field, error) {
	var s *btf.Struct
	if err := spec.TypeByName(structName, &s); err != nil {
		return field{}, fmt.Errorf("BPF socket iterator %w: kernel BTF has no struct %s: %v", inet.ErrUnsupported, structName, err)
	}
	f, ok := findField(s, name, 0)
	if !ok {
		return field{}, fmt.Errorf("BPF socket iterator %w: kernel BTF has no %s.%s", inet.ErrUnsupported, structName, name)
	}
	if f.isBitfield {
		if f.bit+f.nbits > 8 {
			return field{}, fmt.Errorf("BPF socket iterator %w: %s.%s spans bytes", inet.ErrUnsupported, structName, name)
		}
	} else if size != 0 && f.size != size {
		return field{}, fmt.Errorf("BPF socket iterator %w: %s.%s is %d bytes, want %d", inet.ErrUnsupported, structName, name, f.size, size)
	}
	return f, nil
}

// fieldFinder finds struct members in the kernel's BTF: cilium/ebpf's
// decoded spec (loaderBTF) or the raw index (btfIndex).
type fieldFinder interface {
	field(structName, name string, size uint32) (field, error)
}

// loaderBTF is cilium/ebpf's decoded kernel BTF as a fieldFinder.
type loaderBTF struct{ spec *btf.Spec }

func (b loaderBTF) field(structName, name string, size uint32) (field, error) {
	return structField(b.spec, structName, name, size)
}

// fieldSpec names one field a program reads and where its layout goes.
type fieldSpec struct {
	dst      *field
	st, name string
	size     uint32 // 0: any (bitfields)
}

// loadFields fills every spec's field from the kernel's BTF.
func loadFields(src fieldFinder, fs []fieldSpec) error {
	for _, g := range fs {
		f, err := src.field(g.st, g.name, g.size)
		if err != nil {
			return err
		}
		*g.dst = f
	}
	return nil
}

// fields are the fields the socket iterator reads, with their sizes.
func (l *layout) fields() []fieldSpec {
	return []fieldSpec{
		{&l.family, "sock_common", "skc_family", 2},
		{&l.state, "sock_common", "skc_state", 1},
		{&l.reuse, "sock_common", "skc_reuse", 0},
		{&l.reusePort, "sock_common", "skc_reuseport", 0},
		{&l.v6only, "sock_common", "skc_ipv6only", 0},
		{&l.num, "sock_common", "skc_num", 2},
		{&l.dport, "sock_common", "skc_dport", 2},
		{&l.daddr, "sock_common", "skc_daddr", 4},
		{&l.rcvSaddr, "sock_common", "skc_rcv_saddr", 4},
		{&l.v6Daddr, "sock_common", "skc_v6_daddr", 16},
		{&l.v6RcvSaddr, "sock_common", "skc_v6_rcv_saddr", 16},
		{&l.userlocks, "sock", "sk_userlocks", 1},
		{&l.twTSRecentStamp, "tcp_timewait_sock", "tw_ts_recent_stamp", 4},
		{&l.twSubstate, "inet_timewait_sock", "tw_substate", 1},
		{&l.bindHash, "inet_connection_sock", "icsk_bind_hash", 8},
		{&l.twTB, "inet_timewait_sock", "tw_tb", 8},
		{&l.fastreuse, "inet_bind_bucket", "fastreuse", 1},
		{&l.fastreuseport, "inet_bind_bucket", "fastreuseport", 1},
		{&l.fastUID, "inet_bind_bucket", "fastuid", 4},
		{&l.fastRcvSaddr, "inet_bind_bucket", "fast_rcv_saddr", 4},
		{&l.fastV6RcvSaddr, "inet_bind_bucket", "fast_v6_rcv_saddr", 16},
		{&l.fastFamily, "inet_bind_bucket", "fast_sk_family", 2},
		{&l.fastV6Only, "inet_bind_bucket", "fast_ipv6_only", 1},
		{&l.tcpUID, "bpf_iter__tcp", "uid", 4},
		{&l.udpUID, "bpf_iter__udp", "uid", 4},
		{&l.boundDev, "sock_common", "skc_bound_dev_if", 4},
		{&l.skSocket, "sock", "sk_socket", 8},
		{&l.socketFile, "socket", "file", 8},
		{&l.fInode, "file", "f_inode", 8},
		{&l.iIno, "inode", "i_ino", 8},
	}
}

func loadLayout(src fieldFinder) (*layout, error) {
	var l layout
	if err := loadFields(src, l.fields()); err != nil {
		return nil, err
	}
	l.cookie = field{absent: true}
	if !kversion.AtLeast(5, 12) {
		f, err := src.field("sock_common", "skc_cookie", 8)
		if err != nil {
			return nil, err
		}
		l.cookie = f
	}
	// Linux 6.17+, with SOCK_CONNECT_BIND in sk_userlocks: older kernels
	// do not record which ports connect() picked, and the rest is read
	// alike.
	if f, err := src.field("inet_timewait_sock", "tw_connect_bind", 0); err == nil {
		l.twConnectBind = f
	} else {
		l.twConnectBind = field{absent: true}
	}
	// The uid is read as its whole context slot, whose low half it is.
	if l.tcpUID.off%8 != 0 || l.udpUID.off%8 != 0 {
		return nil, fmt.Errorf("BPF socket iterator %w: iterator uid at offsets %d, %d", inet.ErrUnsupported, l.tcpUID.off, l.udpUID.off)
	}
	// The three flags are copied as one byte.
	if l.reuse.off != l.reusePort.off || l.reuse.off != l.v6only.off {
		return nil, fmt.Errorf("BPF socket iterator %w: sock_common reuse flags are not in one byte", inet.ErrUnsupported)
	}
	sock, serr := src.field("socket_alloc", "socket", 0)
	ino, ierr := src.field("socket_alloc", "vfs_inode", 0)
	if serr == nil && ierr == nil && sock.off == 0 {
		l.sockIno = ino.off + l.iIno.off
	}
	return &l, nil
}
