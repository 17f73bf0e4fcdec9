package sockfacts

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"sync"

	"github.com/cilium/ebpf/asm"
	"github.com/tuple-net/tuple/inet"
)

// groupLayout is where the group iterator finds struct sock_reuseport and
// the program attached to it.
type groupLayout struct {
	*layout
	reuseportCB                           field // sock.sk_reuseport_cb
	numSocks, numClosed, reuseportID      field
	reuseProg, socks                      field
	progType, progAttachType, progAux, id field
}

var kernelGroupLayout = sync.OnceValues(func() (*groupLayout, error) {
	l, err := kernelLayout()
	if err != nil {
		return nil, err
	}
	spec, err := kernelSpec()
	if err != nil {
		return nil, err
	}
	return loadGroupLayout(l, loaderBTF{spec})
})

// fields are the fields the group program reads beyond the socket
// program's, with their sizes.
func (g *groupLayout) fields() []fieldSpec {
	return []fieldSpec{
		{&g.reuseportCB, "sock", "sk_reuseport_cb", 8},
		{&g.numSocks, "sock_reuseport", "num_socks", 2},
		{&g.reuseportID, "sock_reuseport", "reuseport_id", 4},
		{&g.reuseProg, "sock_reuseport", "prog", 8},
		{&g.socks, "sock_reuseport", "socks", 0},
		{&g.progType, "bpf_prog", "type", 4},
		{&g.progAttachType, "bpf_prog", "expected_attach_type", 4},
		{&g.progAux, "bpf_prog", "aux", 8},
		{&g.id, "bpf_prog_aux", "id", 4},
	}
}

// loadGroupLayout is the group program's layout: the socket program's l
// and the fields src finds.
func loadGroupLayout(l *layout, src fieldFinder) (*groupLayout, error) {
	g := &groupLayout{layout: l}
	if err := loadFields(src, g.fields()); err != nil {
		return nil, err
	}
	// Closed members kept for migration (Linux 5.14+); none before.
	if f, err := src.field("sock_reuseport", "num_closed_socks", 2); err == nil {
		g.numClosed = f
	} else {
		g.numClosed = field{absent: true}
	}
	if g.socks.off+8*MaxIndex > 1<<15-1 {
		return nil, fmt.Errorf("BPF socket iterator %w: sock_reuseport.socks at %d is out of reach", inet.ErrUnsupported, g.socks.off)
	}
	return g, nil
}

// Group record layout (see groupProgram).
const (
	grpLen      = 64
	grpCookie   = 0
	grpID       = 8
	grpNum      = 12 // num_socks (u16)
	grpClosed   = 14 // num_closed_socks (u16)
	grpIndex    = 16 // s32, -1 when not found
	grpProgType = 20
	grpAttach   = 24
	grpProgID   = 28
	grpHasProg  = 32
	grpState    = 33
	grpFamily   = 34
	grpPort     = 36 // skc_num, host order
	grpSaddr    = 40
	grpV6Saddr  = 44
)

// groupProgram emits one record per socket that belongs to a reuseport
// group: its group, its index in the group's socks array (found by
// comparing the first MaxIndex entries with the socket) and the group's
// program.
func groupProgram(l *groupLayout, proto inet.Proto) asm.Instructions {
	const (
		ctx     = asm.R6
		num     = asm.R7
		sk      = asm.R8
		reuse   = asm.R9
		base    = -grpLen
		scratch = base - 8
	)
	copyField := func(src asm.Register, off uint32, size asm.Size, recOff int16) asm.Instructions {
		return asm.Instructions{
			asm.LoadMem(asm.R1, src, int16(off), size),
			asm.StoreMem(asm.RFP, base+recOff, asm.R1, size),
		}
	}
	insns := asm.Instructions{
		asm.Mov.Reg(ctx, asm.R1),
		asm.LoadMem(sk, ctx, 8, asm.DWord), // ctx->sk_common / ctx->udp_sk
		asm.JEq.Imm(sk, 0, "exit"),
	}
	if proto == inet.TCP {
		// Only full sockets have a group; TIME_WAIT and request
		// sockets give NULL.
		insns = append(insns,
			asm.Mov.Reg(asm.R1, sk),
			asm.FnSkcToTcpSock.Call(),
			asm.JEq.Imm(asm.R0, 0, "exit"),
			asm.Mov.Reg(sk, asm.R0),
		)
	}
	insns = append(insns,
		asm.LoadMem(reuse, sk, int16(l.reuseportCB.off), asm.DWord),
		asm.JEq.Imm(reuse, 0, "exit"),
	)
	insns = append(insns, startRecord(sk, base, grpLen, grpCookie, l.cookie)...)
	insns = append(insns, copyField(sk, l.family.off, asm.Half, grpFamily)...)
	insns = append(insns, copyField(sk, l.state.off, asm.Byte, grpState)...)
	insns = append(insns, copyField(sk, l.num.off, asm.Half, grpPort)...)
	insns = append(insns, copyField(sk, l.rcvSaddr.off, asm.Word, grpSaddr)...)
	for i := uint32(0); i < 16; i += 4 {
		insns = append(insns, copyField(sk, l.v6RcvSaddr.off+i, asm.Word, grpV6Saddr+int16(i))...)
	}
	insns = append(insns, copyField(reuse, l.reuseportID.off, asm.Word, grpID)...)
	if !l.numClosed.absent {
		insns = append(insns, copyField(reuse, l.numClosed.off, asm.Half, grpClosed)...)
	}
	insns = append(insns,
		asm.LoadMem(num, reuse, int16(l.numSocks.off), asm.Half),
		asm.StoreMem(asm.RFP, base+grpNum, num, asm.Half),
		asm.StoreImm(asm.RFP, base+grpIndex, -1, asm.Word),
	)
	// The index: the first i < num_socks with socks[i] == sk. socks is a
	// flexible array, which the verifier does not let a program load
	// from directly: each entry is copied with bpf_probe_read_kernel.
	for i := 0; i < MaxIndex; i++ {
		next := "idx" + strconv.Itoa(i+1)
		insns = append(insns,
			asm.JLE.Imm(num, int32(i), "indexed").WithSymbol("idx"+strconv.Itoa(i)),
			asm.Mov.Reg(asm.R1, asm.RFP),
			asm.Add.Imm(asm.R1, scratch),
			asm.Mov.Imm(asm.R2, 8),
			asm.Mov.Reg(asm.R3, reuse),
			asm.Add.Imm(asm.R3, int32(l.socks.off)+int32(8*i)),
			asm.FnProbeReadKernel.Call(),
			asm.JNE.Imm(asm.R0, 0, "indexed"),
			asm.LoadMem(asm.R1, asm.RFP, scratch, asm.DWord),
			asm.JNE.Reg(asm.R1, sk, next),
			asm.StoreImm(asm.RFP, base+grpIndex, int64(i), asm.Word),
			asm.Ja.Label("indexed"),
		)
	}
	insns = append(insns,
		// Not among the first MaxIndex: the index stays -1.
		asm.Mov.Imm(asm.R0, 0).WithSymbol("idx"+strconv.Itoa(MaxIndex)),
		// The group's program, its type and id.
		asm.LoadMem(asm.R2, reuse, int16(l.reuseProg.off), asm.DWord).WithSymbol("indexed"),
		asm.JEq.Imm(asm.R2, 0, "out"),
		asm.StoreImm(asm.RFP, base+grpHasProg, 1, asm.Byte),
		asm.LoadMem(asm.R1, asm.R2, int16(l.progType.off), asm.Word),
		asm.StoreMem(asm.RFP, base+grpProgType, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R2, int16(l.progAttachType.off), asm.Word),
		asm.StoreMem(asm.RFP, base+grpAttach, asm.R1, asm.Word),
		asm.LoadMem(asm.R3, asm.R2, int16(l.progAux.off), asm.DWord),
		asm.JEq.Imm(asm.R3, 0, "out"),
		asm.LoadMem(asm.R1, asm.R3, int16(l.id.off), asm.Word),
		asm.StoreMem(asm.RFP, base+grpProgID, asm.R1, asm.Word),
	)
	return append(insns, emitRecord(ctx, base, grpLen)...)
}

// ReadGroups lists every socket of proto that belongs to a SO_REUSEPORT
// group in the calling thread's network namespace, with its index and the
// group's program, with the socket's cookie to join it with the socket
// table. Errors wrap inet.ErrUnsupported when the iterator cannot run (no BTF,
// not root).
func ReadGroups(proto inet.Proto) ([]Member, error) {
	target, err := iterTarget(proto)
	if err != nil {
		return nil, err
	}
	it, _, err := attachIter("tuple_rg_"+target, target,
		func(k *rawBTF) (*groupLayout, error) { return k.groups, k.grpErr }, kernelGroupLayout,
		func(l *groupLayout) asm.Instructions { return groupProgram(l, proto) })
	if err != nil {
		return nil, err
	}
	defer it.Close()
	b, err := readIter(it, make([]byte, 0, 64<<10))
	if err != nil {
		return nil, err
	}
	return parseGroupRecords(b, proto)
}

// parseGroupRecords decodes groupProgram's output.
func parseGroupRecords(b []byte, proto inet.Proto) ([]Member, error) {
	if len(b)%grpLen != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a multiple of %d", errRecord, len(b), grpLen)
	}
	out := make([]Member, 0, len(b)/grpLen)
	for ; len(b) > 0; b = b[grpLen:] {
		r := b[:grpLen]
		m := Member{
			Proto:   proto,
			Cookie:  binary.NativeEndian.Uint64(r[grpCookie:]),
			State:   r[grpState],
			GroupID: binary.NativeEndian.Uint32(r[grpID:]),
			Index:   int(int32(binary.NativeEndian.Uint32(r[grpIndex:]))),
			Members: int(binary.NativeEndian.Uint16(r[grpNum:])),
			Closed:  int(binary.NativeEndian.Uint16(r[grpClosed:])),
		}
		port := binary.NativeEndian.Uint16(r[grpPort:])
		switch binary.NativeEndian.Uint16(r[grpFamily:]) {
		case 2:
			m.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(r[grpSaddr:grpSaddr+4])), port)
		case 10:
			m.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(r[grpV6Saddr:grpV6Saddr+16])), port)
		default:
			continue
		}
		if r[grpHasProg] != 0 {
			m.Attached = true
			m.Prog = Program{
				Type:       binary.NativeEndian.Uint32(r[grpProgType:]),
				AttachType: binary.NativeEndian.Uint32(r[grpAttach:]),
				ID:         binary.NativeEndian.Uint32(r[grpProgID:]),
			}
		}
		out = append(out, m)
	}
	return out, nil
}
