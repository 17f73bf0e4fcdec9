package sockfacts

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/prefault"
	"github.com/tuple-net/tuple/netns"
	"golang.org/x/sys/unix"
)

// recordLen is the size of one record the program writes per socket.
const recordLen = 112

// Record offsets (see program).
const (
	recCookie    = 0
	recFamily    = 8
	recState     = 10
	recFlags     = 11 // the sock_common byte holding skc_reuse, skc_reuseport, skc_ipv6only
	recNum       = 12 // local port, host order
	recDport     = 14 // remote port, network order
	recDaddr     = 16
	recRcvSaddr  = 20
	recV6Daddr   = 24
	recV6Saddr   = 40
	recKind      = 56  // kindFull, kindTimeWait or 0
	recLocks     = 57  // sk_userlocks, or the TIME_WAIT byte holding tw_connect_bind
	recFastReuse = 58  // the port's bind bucket: fastreuse (s8)
	recFastRP    = 59  // and fastreuseport (s8); both 0 without a bucket
	recTSRecent  = 60  // tw_ts_recent_stamp
	recFastUID   = 64  // the bucket's reuse cache: fastuid,
	recFastSa4   = 68  // fast_rcv_saddr,
	recFastSa6   = 72  // fast_v6_rcv_saddr,
	recFastFam   = 88  // fast_sk_family,
	recFastV6    = 90  // fast_ipv6_only
	recUID       = 92  // the context's uid (sock_i_uid; 0 for TIME_WAIT entries)
	recDev       = 96  // skc_bound_dev_if
	recSubstate  = 100 // a TIME_WAIT entry's tw_substate
	recInode     = 104 // SOCK_INODE(sk_socket)->i_ino (full sockets with a struct socket)
	kindFull     = 1
	kindTimeWait = 2
	kindBucket   = 0x80 // or'ed into the kind: recFastReuse and recFastRP hold the bucket's state
	tcpTimeWait  = 6    // TCP_TIME_WAIT
	tcpFinWait2  = 5    // TCP_FIN_WAIT2
)

// sk_userlocks bits (include/net/sock.h). SOCK_CONNECT_BIND is not in BTF
// (it is a #define); its value is checked against the kernel by the tests.
const (
	sockBindPortLock = 8
	sockConnectBind  = 16
)

var (
	layoutOnce sync.Once
	kernLayout *layout
	layoutErr  error
)

// kernelLayout reads the field offsets once; the kernel does not change
// under a running process.
func kernelLayout() (*layout, error) {
	layoutOnce.Do(func() {
		spec, err := kernelSpec()
		if err != nil {
			layoutErr = err
			return
		}
		kernLayout, layoutErr = loadLayout(loaderBTF{spec})
	})
	return kernLayout, layoutErr
}

// program builds the iterator program. For TCP the context's second field
// is a sock_common (full socket, TIME_WAIT or request socket); for UDP a
// udp_sock, which starts with its sock_common.
//
// With port not 0 it writes records only for sockets whose local port is
// port: the others are skipped in the kernel. Where o says so, the
// records' inode is 0 (SkipInode, InodesWithin).
func program(l *layout, proto inet.Proto, port uint16, o Option) asm.Instructions {
	const (
		ctx  = asm.R6
		sk   = asm.R7
		base = -recordLen // stack offset of the record
	)
	copyField := func(f field, recOff int16) asm.Instructions {
		var size asm.Size
		switch f.size {
		case 1:
			size = asm.Byte
		case 2:
			size = asm.Half
		case 4:
			size = asm.Word
		case 8:
			size = asm.DWord
		}
		return asm.Instructions{
			asm.LoadMem(asm.R1, sk, int16(f.off), size),
			asm.StoreMem(asm.RFP, base+recOff, asm.R1, size),
		}
	}
	copyAddr := func(f field, recOff int16) asm.Instructions {
		var insns asm.Instructions
		for i := int16(0); i < 16; i += 4 {
			insns = append(insns,
				asm.LoadMem(asm.R1, sk, int16(f.off)+i, asm.Word),
				asm.StoreMem(asm.RFP, base+recOff+i, asm.R1, asm.Word))
		}
		return insns
	}
	insns := asm.Instructions{
		asm.Mov.Reg(ctx, asm.R1),
		asm.LoadMem(sk, ctx, 8, asm.DWord), // ctx->sk_common / ctx->udp_sk
		asm.JEq.Imm(sk, 0, "exit"),
	}
	if port != 0 {
		insns = append(insns,
			asm.LoadMem(asm.R1, sk, int16(l.num.off), asm.Half), // skc_num, host order
			asm.JNE.Imm(asm.R1, int32(port), "exit"))
	}
	insns = append(insns, startRecord(sk, base, recordLen, recCookie, l.cookie)...)
	insns = append(insns, copyField(l.family, recFamily)...)
	insns = append(insns, copyField(l.state, recState)...)
	insns = append(insns, copyField(field{off: l.reuse.off, size: 1}, recFlags)...)
	insns = append(insns, copyField(l.num, recNum)...)
	insns = append(insns, copyField(l.dport, recDport)...)
	insns = append(insns, copyField(l.daddr, recDaddr)...)
	insns = append(insns, copyField(l.rcvSaddr, recRcvSaddr)...)
	insns = append(insns, copyAddr(l.v6Daddr, recV6Daddr)...)
	insns = append(insns, copyAddr(l.v6RcvSaddr, recV6Saddr)...)
	insns = append(insns, copyField(l.boundDev, recDev)...)
	uid := l.tcpUID
	if proto == inet.UDP {
		uid = l.udpUID
	}
	insns = append(insns,
		asm.LoadMem(asm.R1, ctx, int16(uid.off), asm.DWord),
		asm.StoreMem(asm.RFP, base+recUID, asm.R1, asm.Word))
	// inode stores the inode number of the full socket at reg (a BTF
	// pointer), as sock_i_ino (what inet_diag reports) reads it: none
	// without a struct socket. A probe read reaches the inode beside the
	// socket (the verifier checks direct loads against struct socket's
	// bounds); without socket_alloc in BTF the loads go through the file
	// (each load a probe: a NULL on the way stops the chain). The helper
	// call clobbers R0-R5.
	inode := func(reg asm.Register, done string) asm.Instructions {
		if o.skipInode {
			return nil
		}
		var read asm.Instructions
		if r := o.inodes; r != (inet.PortRange{}) {
			read = asm.Instructions{
				asm.LoadMem(asm.R1, sk, int16(l.num.off), asm.Half), // skc_num, host order
				asm.JLT.Imm(asm.R1, int32(r.Lo), done),
				asm.JGT.Imm(asm.R1, int32(r.Hi), done),
			}
		}
		if l.sockIno != 0 {
			return append(read,
				asm.LoadMem(asm.R3, reg, int16(l.skSocket.off), asm.DWord),
				asm.JEq.Imm(asm.R3, 0, done),
				asm.Add.Imm(asm.R3, int32(l.sockIno)),
				asm.Mov.Reg(asm.R1, asm.RFP),
				asm.Add.Imm(asm.R1, base+recInode),
				asm.Mov.Imm(asm.R2, 8),
				asm.FnProbeReadKernel.Call(),
			)
		}
		return append(read,
			asm.LoadMem(asm.R1, reg, int16(l.skSocket.off), asm.DWord),
			asm.JEq.Imm(asm.R1, 0, done),
			asm.LoadMem(asm.R1, asm.R1, int16(l.socketFile.off), asm.DWord),
			asm.JEq.Imm(asm.R1, 0, done),
			asm.LoadMem(asm.R1, asm.R1, int16(l.fInode.off), asm.DWord),
			asm.JEq.Imm(asm.R1, 0, done),
			asm.LoadMem(asm.R1, asm.R1, int16(l.iIno.off), asm.DWord),
			asm.StoreMem(asm.RFP, base+recInode, asm.R1, asm.DWord),
		)
	}
	if proto == inet.UDP {
		// Every UDP socket is a full socket.
		insns = append(insns, inode(sk, "udpino")...)
		insns = append(insns,
			asm.LoadMem(asm.R1, sk, int16(l.userlocks.off), asm.Byte).WithSymbol("udpino"),
			asm.StoreMem(asm.RFP, base+recLocks, asm.R1, asm.Byte),
			asm.StoreImm(asm.RFP, base+recKind, kindFull, asm.Byte),
			asm.Ja.Label("out"),
		)
	} else {
		insns = append(insns,
			asm.Mov.Reg(asm.R1, sk),
			asm.FnSkcToTcpSock.Call(),
			asm.JEq.Imm(asm.R0, 0, "tw"),
			asm.Mov.Reg(asm.R9, asm.R0), // the tcp_sock, kept across the inode's helper call
		)
		insns = append(insns, inode(asm.R9, "tcpino")...)
		insns = append(insns,
			asm.LoadMem(asm.R1, asm.R9, int16(l.userlocks.off), asm.Byte).WithSymbol("tcpino"),
			asm.StoreMem(asm.RFP, base+recLocks, asm.R1, asm.Byte),
			asm.StoreImm(asm.RFP, base+recKind, kindFull, asm.Byte),
			asm.LoadMem(asm.R8, asm.R9, int16(l.bindHash.off), asm.DWord), // icsk_bind_hash
			asm.Ja.Label("bucket"),
			asm.Mov.Reg(asm.R1, sk).WithSymbol("tw"),
			asm.FnSkcToTcpTimewaitSock.Call(),
			asm.JNE.Imm(asm.R0, 0, "twsock"),
			// The helper refuses some TIME_WAIT entries (on 6.18, the
			// server's side of a closed connection): their reuse flags
			// are in the sock_common already copied; the two TIME_WAIT
			// fields are read with probe reads. The bucket stays unread.
			asm.LoadMem(asm.R1, asm.RFP, base+recState, asm.Byte),
			asm.JNE.Imm(asm.R1, tcpTimeWait, "out"),
		)
		// Kernels before 6.17 have no tw_connect_bind: its byte stays 0
		// and decodeRecord reports the port's origin unknown.
		if !l.twConnectBind.absent {
			insns = append(insns, probeRead(base+recLocks, 1, asm.Mov.Reg(asm.R3, sk), l.twConnectBind.off)...)
		}
		insns = append(insns, probeRead(base+recTSRecent, 4, asm.Mov.Reg(asm.R3, sk), l.twTSRecentStamp.off)...)
		insns = append(insns, probeRead(base+recSubstate, 1, asm.Mov.Reg(asm.R3, sk), l.twSubstate.off)...)
		insns = append(insns,
			asm.StoreImm(asm.RFP, base+recKind, kindTimeWait, asm.Byte),
			asm.Ja.Label("out"),
		)
		twsock := asm.Instructions{
			asm.LoadMem(asm.R1, asm.R0, int16(l.twTSRecentStamp.off), asm.Word),
			asm.StoreMem(asm.RFP, base+recTSRecent, asm.R1, asm.Word),
			asm.LoadMem(asm.R1, asm.R0, int16(l.twSubstate.off), asm.Byte),
			asm.StoreMem(asm.RFP, base+recSubstate, asm.R1, asm.Byte),
		}
		if !l.twConnectBind.absent {
			twsock = append(asm.Instructions{
				asm.LoadMem(asm.R1, asm.R0, int16(l.twConnectBind.off), asm.Byte),
				asm.StoreMem(asm.RFP, base+recLocks, asm.R1, asm.Byte),
			}, twsock...)
		}
		twsock[0] = twsock[0].WithSymbol("twsock")
		insns = append(insns, twsock...)
		insns = append(insns,
			asm.StoreImm(asm.RFP, base+recKind, kindTimeWait, asm.Byte),
			asm.LoadMem(asm.R8, asm.R0, int16(l.twTB.off), asm.DWord), // tw_tb
			// The port's bind bucket, when the socket holds one.
			asm.JEq.Imm(asm.R8, 0, "out").WithSymbol("bucket"),
			asm.LoadMem(asm.R1, asm.R8, int16(l.fastreuse.off), asm.Byte),
			asm.StoreMem(asm.RFP, base+recFastReuse, asm.R1, asm.Byte),
			asm.LoadMem(asm.R1, asm.R8, int16(l.fastreuseport.off), asm.Byte),
			asm.StoreMem(asm.RFP, base+recFastRP, asm.R1, asm.Byte),
			asm.LoadMem(asm.R1, asm.R8, int16(l.fastUID.off), asm.Word),
			asm.StoreMem(asm.RFP, base+recFastUID, asm.R1, asm.Word),
			asm.LoadMem(asm.R1, asm.R8, int16(l.fastRcvSaddr.off), asm.Word),
			asm.StoreMem(asm.RFP, base+recFastSa4, asm.R1, asm.Word),
			asm.LoadMem(asm.R1, asm.R8, int16(l.fastV6RcvSaddr.off), asm.Word),
			asm.StoreMem(asm.RFP, base+recFastSa6, asm.R1, asm.Word),
			asm.LoadMem(asm.R1, asm.R8, int16(l.fastV6RcvSaddr.off)+4, asm.Word),
			asm.StoreMem(asm.RFP, base+recFastSa6+4, asm.R1, asm.Word),
			asm.LoadMem(asm.R1, asm.R8, int16(l.fastV6RcvSaddr.off)+8, asm.Word),
			asm.StoreMem(asm.RFP, base+recFastSa6+8, asm.R1, asm.Word),
			asm.LoadMem(asm.R1, asm.R8, int16(l.fastV6RcvSaddr.off)+12, asm.Word),
			asm.StoreMem(asm.RFP, base+recFastSa6+12, asm.R1, asm.Word),
			asm.LoadMem(asm.R1, asm.R8, int16(l.fastFamily.off), asm.Half),
			asm.StoreMem(asm.RFP, base+recFastFam, asm.R1, asm.Half),
			asm.LoadMem(asm.R1, asm.R8, int16(l.fastV6Only.off), asm.Byte),
			asm.StoreMem(asm.RFP, base+recFastV6, asm.R1, asm.Byte),
			asm.LoadMem(asm.R1, asm.RFP, base+recKind, asm.Byte),
			asm.Or.Imm(asm.R1, kindBucket),
			asm.StoreMem(asm.RFP, base+recKind, asm.R1, asm.Byte),
		)
	}
	return append(insns, emitRecord(ctx, base, recordLen)...)
}

// startRecord is the iterator programs' common start: it zeroes the n-byte
// record at stack offset base and stores sk's cookie at cookieOff in it,
// through bpf_get_socket_cookie, which assigns one to a socket that has
// none yet, the way inet_diag does: records and a dump read at the same
// time still meet by cookie. Where the helper is not allowed (cookie is
// present: before 5.12) the cookie is read from the socket, 0 until
// someone asked for it.
func startRecord(sk asm.Register, base, n, cookieOff int16, cookie field) asm.Instructions {
	insns := asm.Instructions{asm.Mov.Imm(asm.R1, 0)}
	for i := int16(0); i < n; i += 8 {
		insns = append(insns, asm.StoreMem(asm.RFP, base+i, asm.R1, asm.DWord))
	}
	if !cookie.absent {
		// Before 5.12 iterator programs may not call
		// bpf_get_socket_cookie: the cookie is read where the kernel
		// keeps it, 0 for a socket no one asked the cookie of yet
		// (inet_diag gives every socket it dumps one).
		return append(insns,
			asm.LoadMem(asm.R1, sk, int16(cookie.off), asm.DWord),
			asm.StoreMem(asm.RFP, base+cookieOff, asm.R1, asm.DWord),
		)
	}
	return append(insns,
		asm.Mov.Reg(asm.R1, sk),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, base+cookieOff, asm.R0, asm.DWord),
	)
}

// probeRead copies size bytes at the kernel address base+off, base being
// what the instruction src leaves in R3, to the stack at dst, with
// bpf_probe_read_kernel (for memory the verifier does not let a program
// load from directly). It clobbers R0-R5.
func probeRead(dst int16, size int32, src asm.Instruction, off uint32) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, int32(dst)),
		asm.Mov.Imm(asm.R2, size),
		src,
		asm.Add.Imm(asm.R3, int32(off)),
		asm.FnProbeReadKernel.Call(),
	}
}

// emitRecord is the iterator programs' common end: at label "out" it writes
// the n-byte record at stack offset base to the seq file (bpf_seq_write
// with ctx->meta->seq), and at label "exit" it returns 0.
func emitRecord(ctx asm.Register, base, n int32) asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R1, ctx, 0, asm.DWord).WithSymbol("out"), // ctx->meta
		asm.LoadMem(asm.R1, asm.R1, 0, asm.DWord),                // meta->seq
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, base),
		asm.Mov.Imm(asm.R3, n),
		asm.FnSeqWrite.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	}
}

// Read walks every socket of proto in the calling thread's network
// namespace. The caller should hold its goroutine on one OS thread
// (runtime.LockOSThread) when that thread is not in the process's
// namespace.
func Read(proto inet.Proto) ([]Sock, error) {
	r, err := NewReader(proto)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.Read(nil)
}

// Reader reads one protocol's records again and again with one loaded
// program (a load runs the verifier, the dearest part of a read): for a
// process that reads them on every scrape. It is not safe for concurrent
// use.
type Reader struct {
	proto    inet.Proto
	l        *layout
	it       iterLink // nil once closed
	requests int      // request sockets the last Scan walked past
}

// Requests is how many request sockets (connections in SYN_RECV, which own
// no port and have no record of their own) the last Scan walked past.
func (r *Reader) Requests() int { return r.requests }

// KnowsPortOrigin reports whether this kernel's records say which ports
// connect() picked (Sock.ConnectBindKnown: Linux 6.17+).
func (r *Reader) KnowsPortOrigin() bool { return !r.l.twConnectBind.absent }

// NewReader loads the iterator program of proto (TCP or UDP), reading what
// opts leave in. Close it.
func NewReader(proto inet.Proto, opts ...Option) (*Reader, error) {
	return newReader(proto, 0, join(opts))
}

// ReadPort is Read of the sockets whose local port is port only, filtered
// in the kernel: a caller that asks about one port does not decode the
// records of every socket. opts are as for NewReader.
func ReadPort(proto inet.Proto, port uint16, opts ...Option) ([]Sock, error) {
	r, err := newReader(proto, port, join(opts))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.Read(nil)
}

// newReader loads the program (attachIter).
func newReader(proto inet.Proto, port uint16, o Option) (*Reader, error) {
	target, err := iterTarget(proto)
	if err != nil {
		return nil, err
	}
	it, l, err := attachIter("tuple_sk_"+target, target,
		func(k *rawBTF) (*layout, error) { return k.sock, k.sockErr }, kernelLayout,
		func(l *layout) asm.Instructions { return program(l, proto, port, o) })
	if err != nil {
		return nil, err
	}
	return &Reader{proto: proto, l: l, it: it}, nil
}

// attachIter loads and attaches the iterator program prog builds over
// target: with bpf(2) from the layout rawLayout takes from the raw BTF
// (rawKernel), or by cilium/ebpf's loader from loaderLayout's when the
// raw BTF cannot be read or the raw load fails. The loader decodes the kernel's BTF with every type the
// iterator's arguments reach: tens of milliseconds of a command's run.
func attachIter[L any](name, target string, rawLayout func(*rawBTF) (*L, error), loaderLayout func() (*L, error), prog func(*L) asm.Instructions) (iterLink, *L, error) {
	if k, err := rawKernel(); err == nil {
		l, err := rawLayout(k)
		if err != nil {
			// A field the kernel lacks: the loader would find it
			// missing too, after decoding the BTF.
			if !errors.Is(err, inet.ErrUnsupported) {
				err = fmt.Errorf("BPF socket iterator %w: %v", inet.ErrUnsupported, err)
			}
			return nil, nil, err
		}
		lnk, err := rawIterLink(name, prog(l), k.targets[target])
		if err == nil {
			return lnk, l, nil
		}
		if errors.Is(err, unix.EPERM) && os.Geteuid() != 0 {
			// The loader would fail alike, after decoding the BTF.
			return nil, nil, errUnprivileged(target)
		}
	}
	l, err := loaderLayout()
	if err != nil {
		return nil, nil, err
	}
	it, err := loadIter(name, target, prog(l))
	if err != nil {
		return nil, nil, err
	}
	return it, l, nil
}

// Read walks every socket of the reader's protocol in the calling thread's
// network namespace, as the package's Read does, and appends the records to
// dst[:0]: pass the previous result to reuse its array, or an empty slice
// with room for the sockets expected.
func (r *Reader) Read(dst []Sock) ([]Sock, error) {
	// The program's output is decoded a chunk at a time as it is read
	// (Scan), never held whole: on a busy host it is megabytes of fresh
	// pages, for records decoded at once. Scan's chunks are left to fault
	// in as they fill: a read of one quiet port touches a few pages of
	// them.
	dst = dst[:0]
	_, err := r.Scan(nil, func(s *Sock) {
		if len(dst) == cap(dst) {
			dst = prefault.Grow(dst, 1024)
		}
		dst = append(dst, *s)
	})
	if err != nil {
		return nil, err
	}
	return dst, nil
}

// Close unloads the program.
func (r *Reader) Close() error {
	if r == nil || r.it == nil {
		return nil
	}
	err := r.it.Close()
	r.it = nil
	return err
}

// kernelBTF holds the kernel's BTF, decoded once per process for every
// program and layout (decoding it is the dearest part of a load).
var kernelBTF = btf.NewCache()

func kernelSpec() (*btf.Spec, error) {
	spec, err := kernelBTF.Kernel()
	if err != nil {
		return nil, fmt.Errorf("BPF socket iterator %w: kernel BTF: %v", inet.ErrUnsupported, err)
	}
	return spec, nil
}

// iterLink is an iterator program attached to its target: each Open runs
// it anew, in the calling thread's network namespace; Close unloads it.
type iterLink interface {
	Open() (io.ReadCloser, error)
	Close() error
}

// loaderIter is an iterator program cilium/ebpf loaded and attached.
type loaderIter struct {
	coll *ebpf.Collection
	it   *link.Iter
}

func (l loaderIter) Open() (io.ReadCloser, error) { return l.it.Open() }

func (l loaderIter) Close() error {
	err := l.it.Close()
	l.coll.Close()
	return err
}

// errUnprivileged is a load's EPERM without root: the cause is the
// privilege, whatever cilium/ebpf's message suggests (it blames the
// memlock limit for every EPERM).
func errUnprivileged(target string) error {
	return fmt.Errorf("BPF socket iterator %w: load iter/%s program: %s: %w", inet.ErrUnsupported, target, UnprivilegedCause(), unix.EPERM)
}

// loadIter loads insns as a BPF iterator program and attaches it to the
// kernel's iter/target. Failures wrap inet.ErrUnsupported.
func loadIter(name, target string, insns asm.Instructions) (iterLink, error) {
	coll, err := ebpf.NewCollectionWithOptions(&ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{name: {
		Name:         name,
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceIter,
		AttachTo:     target,
		Instructions: insns,
		// bpf_seq_write and the skc_to_* helpers are GPL-only; the
		// programs only copy fields out.
		License: "GPL",
	}}}, ebpf.CollectionOptions{Cache: kernelBTF})
	if err != nil {
		if errors.Is(err, unix.EPERM) && os.Geteuid() != 0 {
			return nil, errUnprivileged(target)
		}
		return nil, fmt.Errorf("BPF socket iterator %w: load iter/%s program: %v", inet.ErrUnsupported, target, err)
	}
	it, err := link.AttachIter(link.IterOptions{Program: coll.Programs[name]})
	if err != nil {
		coll.Close()
		return nil, fmt.Errorf("BPF socket iterator %w: attach iter/%s: %v", inet.ErrUnsupported, target, err)
	}
	return loaderIter{coll, it}, nil
}

// readIter runs the attached iterator once in the calling thread's network
// namespace and appends what it wrote to buf, doubling it when full: a
// buffer sized for the output makes the read allocate nothing more.
func readIter(it iterLink, buf []byte) ([]byte, error) {
	rd, err := it.Open()
	if err != nil {
		return nil, fmt.Errorf("open BPF iterator: %w", err)
	}
	defer rd.Close()
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read BPF iterator: %w", err)
		}
		if n == 0 {
			return buf, nil
		}
	}
}

// UnprivilegedCause says why a process that is not root may not load the
// iterator: kernel.unprivileged_bpf_disabled when it forbids every
// unprivileged bpf() use, else the capabilities a tracing program needs.
func UnprivilegedCause() string { return unprivilegedCause("/proc") }

func unprivilegedCause(procRoot string) string {
	who := fmt.Sprintf("tuple runs as uid %d, not root", os.Geteuid())
	b, err := os.ReadFile(filepath.Join(procRoot, "sys/kernel/unprivileged_bpf_disabled"))
	if err != nil {
		return who + " (a BPF socket iterator needs CAP_BPF and CAP_PERFMON)"
	}
	switch v := strings.TrimSpace(string(b)); v {
	case "0":
		return who + " (a BPF socket iterator needs CAP_BPF and CAP_PERFMON; unprivileged BPF is allowed but not for tracing programs)"
	default:
		return fmt.Sprintf("unprivileged BPF is disabled (kernel.unprivileged_bpf_disabled=%s) and %s", v, who)
	}
}

var errRecord = errors.New("sockfacts: malformed record stream")

// decodeRecord decodes one record into *s, reporting false for records
// that are no socket with a port's facts (request sockets, other
// families).
func decodeRecord(r []byte, proto inet.Proto, l *layout, s *Sock) bool {
	*s = Sock{Proto: proto, Cookie: binary.NativeEndian.Uint64(r[recCookie:]),
		UID: binary.NativeEndian.Uint32(r[recUID:]), Dev: int(int32(binary.NativeEndian.Uint32(r[recDev:]))),
		Inode: binary.NativeEndian.Uint64(r[recInode:])}
	lport := binary.NativeEndian.Uint16(r[recNum:])
	rport := binary.BigEndian.Uint16(r[recDport:])
	switch binary.NativeEndian.Uint16(r[recFamily:]) {
	case 2: // AF_INET
		s.Family = inet.IPv4
		s.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(r[recRcvSaddr:recRcvSaddr+4])), lport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(r[recDaddr:recDaddr+4])), rport)
	case 10: // AF_INET6
		s.Family = inet.IPv6
		s.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(r[recV6Saddr:recV6Saddr+16])), lport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(r[recV6Daddr:recV6Daddr+16])), rport)
	default:
		return false
	}
	s.State = r[recState]
	flags := r[recFlags]
	s.ReuseAddr = l.reuse.bits(flags) != 0
	s.ReusePort = l.reusePort.bits(flags) != 0
	s.V6Only = l.v6only.bits(flags) != 0
	if r[recKind]&kindBucket != 0 {
		s.BucketKnown = true
		s.Bucket = Bucket{
			FastReuse:     int8(r[recFastReuse]),
			FastReusePort: int8(r[recFastRP]),
			FastUID:       binary.NativeEndian.Uint32(r[recFastUID:]),
			FastV6Only:    r[recFastV6] != 0,
		}
		switch binary.NativeEndian.Uint16(r[recFastFam:]) {
		case 2:
			s.Bucket.FastFamily = inet.IPv4
			s.Bucket.FastAddr = netip.AddrFrom4([4]byte(r[recFastSa4 : recFastSa4+4]))
		case 10:
			s.Bucket.FastFamily = inet.IPv6
			s.Bucket.FastAddr = netip.AddrFrom16([16]byte(r[recFastSa6 : recFastSa6+16]))
		}
		// __inet_hash_connect shares a port only while both caches
		// are negative: no owner has taken it through bind().
		s.BucketConnectOnly = int8(r[recFastReuse]) < 0 && int8(r[recFastRP]) < 0
	}
	switch r[recKind] &^ kindBucket {
	case kindFull:
		// sk_userlocks is a byte on recent kernels, four bits of one
		// on older ones: read through its BTF bit offset.
		locks := l.userlocks.bits(r[recLocks])
		s.BindPortLock = locks&sockBindPortLock != 0
		if proto == inet.TCP && !l.twConnectBind.absent {
			s.ConnectBind = locks&sockConnectBind != 0
			s.ConnectBindKnown = true
		}
	case kindTimeWait:
		s.TimeWait = true
		if !l.twConnectBind.absent {
			s.ConnectBind = l.twConnectBind.bits(r[recLocks]) != 0
			s.ConnectBindKnown = true
		}
		s.Timestamps = int32(binary.NativeEndian.Uint32(r[recTSRecent:])) != 0
		s.FinWait2 = r[recSubstate] == tcpFinWait2
	default:
		return false // request sockets own no port
	}
	return true
}

// Scan walks every socket of the reader's protocol, as Read does, without
// keeping the records: they are read into buf a chunk at a time (buf's
// capacity, at least scanBuffers*scanChunk bytes; returned for the next scan to reuse)
// and each is decoded in turn into one Sock that fn sees during its call
// only. fn runs on another goroutine than the reads (one chunk is decoded
// while the next is read), one record at a time, in the stream's order. It is for callers that keep a few fields of every socket (the
// ports budget, scrape after scrape) and would otherwise hold the table
// twice.
func (r *Reader) Scan(buf []byte, fn func(*Sock)) ([]byte, error) {
	if cap(buf) < scanBuffers*scanChunk {
		buf = make([]byte, 0, scanBuffers*scanChunk)
	}
	rd, err := r.it.Open()
	if err != nil {
		return buf, fmt.Errorf("open BPF iterator: %w", err)
	}
	defer rd.Close()
	r.requests, err = scanRecords(rd.Read, buf, r.proto, r.l, fn)
	return buf, err
}

// scanRecords decodes the records read returns, read into buf (its whole
// capacity) a chunk at a time, handing each socket to fn, and returns how
// many request sockets it passed.
func scanRecords(read func([]byte) (int, error), buf []byte, proto inet.Proto, l *layout, fn func(*Sock)) (requests int, err error) {
	var s Sock
	err = scanChunks(read, buf, recordLen, func(rec []byte) {
		if decodeRecord(rec, proto, l, &s) {
			fn(&s)
		} else if rec[recKind]&^kindBucket == 0 {
			requests++
		}
	})
	return requests, err
}

// scanChunks hands each n-byte record read returns to fn, reading into
// buf a chunk at a time: the stream is never held whole. The reads and fn
// run side by side, fn on another goroutine, in the stream's order, a
// chunk behind: the kernel walks its table for the next chunk while this
// one is decoded. buf's capacity is cut into scanBuffers chunks, each
// handed on once reads have filled half of it: a handoff wakes the other
// goroutine, dear on a virtual machine, so it comes every few reads, not
// after each one. A record cut by a read waits for the rest; a stream that
// ends inside one is malformed.
func scanChunks(read func([]byte) (int, error), buf []byte, n int, fn func(rec []byte)) error {
	size := max(cap(buf)/scanBuffers, 2*n)
	free := make(chan []byte, scanBuffers)
	for i := range scanBuffers {
		if (i+1)*size <= cap(buf) {
			free <- buf[i*size : i*size : (i+1)*size]
		} else {
			free <- make([]byte, 0, size)
		}
	}
	full := make(chan []byte, scanBuffers)
	decoded := make(chan struct{})
	go func() {
		defer close(decoded)
		for b := range full {
			for rec := b; len(rec) > 0; rec = rec[n:] {
				fn(rec[:n])
			}
			free <- b[:0]
		}
	}()
	err := readChunks(read, n, free, full)
	close(full)
	<-decoded
	return err
}

// readChunks reads into the chunks of free and passes each one's whole
// records on to full, the cut record that ends it carried to the next.
func readChunks(read func([]byte) (int, error), n int, free <-chan []byte, full chan<- []byte) error {
	b := <-free
	for {
		// There is room: a chunk is at most half full between reads
		// (it holds two records at least, and at most one cut record is
		// carried).
		m, err := read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		end := err == io.EOF || (err == nil && m == 0)
		if whole := len(b) - len(b)%n; whole > 0 && (len(b) > cap(b)/2 || end || err != nil) {
			next := append(<-free, b[whole:]...)
			full <- b[:whole]
			b = next
		}
		if end {
			break
		}
		if err != nil {
			return fmt.Errorf("read BPF iterator: %w", err)
		}
	}
	if len(b) != 0 {
		return fmt.Errorf("BPF iterator %w: %d bytes after the last whole record", errRecord, len(b))
	}
	return nil
}

// scanChunk is what Scan hands on to be decoded at a time: two of the
// 32 KiB a BPF iterator's read returns at most, so that a chunk is handed
// on after two reads or more. A scan's buffer holds scanBuffers of them:
// one being read, the others being decoded or waiting to be. Not larger:
// a one-shot command's buffer is fresh memory, where a page costs 5-10 us
// on a virtual machine that shadows the guest's page tables (see socktab's
// recvBatch); three 256 KiB chunks are 192 pages, these 48.
const (
	scanChunk   = 64 << 10
	scanBuffers = 3
)

// ReadAsync starts Read in the background and returns a function that waits
// for its result. The read happens in the calling thread's network
// namespace (a dedicated thread joins it), so the caller can dump the
// socket table meanwhile; records carry cookies either way.
// dst is as for Reader.Read.
func ReadAsync(proto inet.Proto, dst []Sock) (wait func() ([]Sock, error)) {
	return inThisNamespace(func() ([]Sock, error) {
		r, err := NewReader(proto)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return r.Read(dst)
	})
}

// ReadPortAsync is ReadPort in the background, in the calling thread's
// network namespace, as ReadAsync.
func ReadPortAsync(proto inet.Proto, port uint16, opts ...Option) (wait func() ([]Sock, error)) {
	return inThisNamespace(func() ([]Sock, error) { return ReadPort(proto, port, opts...) })
}

// ReadAsync is Reader.Read in the background, in the calling thread's
// network namespace, as the package's ReadAsync.
func (r *Reader) ReadAsync(dst []Sock) (wait func() ([]Sock, error)) {
	return inThisNamespace(func() ([]Sock, error) { return r.Read(dst) })
}

// ScanAsync is Scan in the background, in the calling thread's network
// namespace, as ReadAsync: fn runs on the scanning thread.
func (r *Reader) ScanAsync(buf []byte, fn func(*Sock)) (wait func() ([]byte, error)) {
	return inThisNamespace(func() ([]byte, error) { return r.Scan(buf, fn) })
}

// inThisNamespace runs read on another thread in the calling thread's
// network namespace and returns, once read has started there, a function
// that waits for its result (netns.StartHere: the walk goes first).
// Failing to start it there is the iterator unsupported here.
func inThisNamespace[T any](read func() (T, error)) (wait func() (T, error)) {
	var v T
	w := netns.StartHere(func() (err error) {
		v, err = read()
		return err
	})
	return func() (T, error) {
		ran, err := w()
		if !ran {
			err = fmt.Errorf("BPF socket iterator %w: %v", inet.ErrUnsupported, err)
		}
		return v, err
	}
}

// iterTarget names the BPF iterator that walks proto's sockets.
func iterTarget(proto inet.Proto) (string, error) {
	switch proto {
	case inet.TCP:
		return "tcp", nil
	case inet.UDP:
		return "udp", nil
	}
	return "", fmt.Errorf("sockfacts: protocol %d", proto)
}
