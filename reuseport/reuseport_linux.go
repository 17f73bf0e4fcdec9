package reuseport

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/tuple-net/tuple/inet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// cpuProgram is the classic BPF program of CPU steering: return the number
// of the CPU running it, which the kernel takes as the member's index.
var cpuProgram = sync.OnceValues(func() ([]unix.SockFilter, error) {
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtCPUID},
		bpf.RetA{},
	})
	if err != nil {
		return nil, err
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
})

// AttachCPU attaches CPU steering to the group of c (any member, after
// listen): a connection received on CPU i goes to the i-th member to have
// called listen().
func AttachCPU(c syscall.Conn) error {
	insns, err := cpuProgram()
	if err != nil {
		return fmt.Errorf("assemble cpu program: %w", err)
	}
	return control(c, func(fd uintptr) error {
		prog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}
		return os.NewSyscallError("setsockopt SO_ATTACH_REUSEPORT_CBPF",
			unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &prog))
	})
}

// Detach removes the group's program (Linux 5.3+): the kernel hashes again.
func Detach(c syscall.Conn) error {
	return control(c, func(fd uintptr) error {
		return os.NewSyscallError("setsockopt SO_DETACH_REUSEPORT_BPF",
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_REUSEPORT_BPF, 0))
	})
}

// sk_reuseport return codes and context offsets (include/uapi/linux/bpf.h).
const (
	skDrop        = 0
	skPass        = 1
	reuseMDHash   = 32 // struct sk_reuseport_md.hash
	pathNotLoaded = "load sk_reuseport program"
)

// attachEBPF attaches prog to the group of c.
func attachEBPF(c syscall.Conn, prog *ebpf.Program) error {
	return control(c, func(fd uintptr) error {
		return os.NewSyscallError("setsockopt SO_ATTACH_REUSEPORT_EBPF",
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, prog.FD()))
	})
}

// loadProgram loads an sk_reuseport program, as SELECT_OR_MIGRATE when
// migrate is set.
func loadProgram(name string, insns asm.Instructions, migrate bool) (*ebpf.Program, error) {
	at := ebpf.AttachSkReuseportSelect
	if migrate {
		at = ebpf.AttachSkReuseportSelectOrMigrate
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         name,
		Type:         ebpf.SkReuseport,
		AttachType:   at,
		Instructions: insns,
		License:      "GPL",
	})
	if err != nil {
		return nil, fmt.Errorf("reuseport programs %w: %s %s: %v", inet.ErrUnsupported, pathNotLoaded, name, err)
	}
	return prog, nil
}

// AttachMigrate attaches to the group of c a program that keeps the
// kernel's hash choice for new connections and, loaded as
// SELECT_OR_MIGRATE, makes the kernel move a closing member's queued and
// half-open connections to a live member (Linux 5.14+, CAP_BPF); a
// handshake finishing at the instant of the close is still reset.
func AttachMigrate(c syscall.Conn) error {
	prog, err := loadProgram("tuple_rp_migrate", asm.Instructions{
		asm.Mov.Imm(asm.R0, skPass), // no choice made: the kernel hashes
		asm.Return(),
	}, true)
	if err != nil {
		return err
	}
	defer prog.Close() // the group holds its own reference
	return attachEBPF(c, prog)
}

// A Supervisor steers a group's connections to the members it placed.
// Its program picks, by the kernel's hash, one of the live indices; Drain
// takes an index out of that choice and Replace puts another socket at an
// index. A Map is safe for concurrent use.
type Supervisor struct {
	mu    sync.Mutex
	size  int
	prog  *ebpf.Program
	socks *ebpf.Map // REUSEPORT_SOCKARRAY: index -> socket
	live  *ebpf.Map // ARRAY: [0] number of live indices, [1..] the live indices
	order []uint32  // the live indices as the live map holds them
}

// NewSupervisor loads a map-steering program for up to size members.
func NewSupervisor(size int, o SupervisorOptions) (*Supervisor, error) {
	if size < 1 || size > 1<<16 {
		return nil, fmt.Errorf("reuseport map: size %d: want 1-65536", size)
	}
	socks, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "tuple_rp_socks", Type: ebpf.ReusePortSockArray,
		KeySize: 4, ValueSize: 8, MaxEntries: uint32(size),
	})
	if err != nil {
		return nil, fmt.Errorf("reuseport programs %w: create REUSEPORT_SOCKARRAY: %v", inet.ErrUnsupported, err)
	}
	live, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "tuple_rp_live", Type: ebpf.Array,
		KeySize: 4, ValueSize: 4, MaxEntries: uint32(size + 1),
	})
	if err != nil {
		socks.Close()
		return nil, fmt.Errorf("reuseport programs %w: create live index array: %v", inet.ErrUnsupported, err)
	}
	prog, err := loadProgram("tuple_rp_map", mapProgram(socks.FD(), live.FD()), o.Migrate)
	if err != nil {
		socks.Close()
		live.Close()
		return nil, err
	}
	return &Supervisor{size: size, prog: prog, socks: socks, live: live}, nil
}

// mapProgram: idx = live[1 + hash % live[0]]; select socks[idx]. With no
// live index, or an empty slot, it makes no choice and the kernel hashes
// over every member.
func mapProgram(socksFD, liveFD int) asm.Instructions {
	const (
		ctx   = asm.R6
		count = asm.R7
		slot  = asm.R8
	)
	lookup := func(key asm.Register) asm.Instructions {
		return asm.Instructions{
			asm.StoreMem(asm.RFP, -4, key, asm.Word),
			asm.LoadMapPtr(asm.R1, liveFD),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "pass"),
		}
	}
	insns := asm.Instructions{
		asm.Mov.Reg(ctx, asm.R1),
		asm.Mov.Imm(count, 0),
	}
	insns = append(insns, lookup(count)...)
	insns = append(insns,
		asm.LoadMem(count, asm.R0, 0, asm.Word),
		asm.JEq.Imm(count, 0, "pass"),
		asm.LoadMem(slot, ctx, reuseMDHash, asm.Word),
		asm.Mod.Reg32(slot, count),
		asm.Add.Imm(slot, 1),
	)
	insns = append(insns, lookup(slot)...)
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.StoreMem(asm.RFP, -8, asm.R1, asm.Word),
		asm.Mov.Reg(asm.R1, ctx),
		asm.LoadMapPtr(asm.R2, socksFD),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -8),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkSelectReuseport.Call(),
		asm.Mov.Imm(asm.R0, skPass).WithSymbol("pass"),
		asm.Return(),
	)
	return insns
}

// Attach attaches the program to the group of c (any member, after listen).
func (m *Supervisor) Attach(c syscall.Conn) error { return attachEBPF(c, m.prog) }

// Size is the number of indices.
func (m *Supervisor) Size() int { return m.size }

// Place puts the listening socket c at index i and makes i live.
func (m *Supervisor) Place(i int, c syscall.Conn) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.put(i, c); err != nil {
		return err
	}
	for _, v := range m.order {
		if v == uint32(i) {
			return nil
		}
	}
	// The new index first, then the count: the program never reads a
	// position that is not filled.
	n := uint32(len(m.order))
	if err := m.live.Update(n+1, uint32(i), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reuseport map: make %d live: %w", i, err)
	}
	if err := m.live.Update(uint32(0), n+1, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reuseport map: make %d live: %w", i, err)
	}
	m.order = append(m.order, uint32(i))
	return nil
}

// Replace puts the listening socket c at index i in place of the one
// there; from then on i's new connections go to c. The old socket keeps its
// queue: accept it, then close it.
func (m *Supervisor) Replace(i int, c syscall.Conn) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.put(i, c)
}

func (m *Supervisor) put(i int, c syscall.Conn) error {
	if i < 0 || i >= m.size {
		return fmt.Errorf("reuseport map: index %d out of 0-%d", i, m.size-1)
	}
	return control(c, func(fd uintptr) error {
		if err := m.socks.Update(uint32(i), uint64(fd), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("reuseport map: place socket at %d: %w", i, err)
		}
		return nil
	})
}

// Drain takes index i out of the choice: its socket gets no new connection
// once Drain returns (a SYN steered just before may still arrive), and
// keeps the ones it has queued. Accept them, then close the socket; with
// SupervisorOptions.Migrate, what is still queued or half-open at the close moves
// to a live member.
func (m *Supervisor) Drain(i int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	pos := -1
	for p, v := range m.order {
		if v == uint32(i) {
			pos = p
		}
	}
	if pos < 0 {
		return fmt.Errorf("reuseport map: index %d is not live", i)
	}
	last := len(m.order) - 1
	// Move the last live index into the drained one's position, then
	// shorten the list: a reader sees either list whole.
	if err := m.live.Update(uint32(pos+1), m.order[last], ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reuseport map: drain %d: %w", i, err)
	}
	if err := m.live.Update(uint32(0), uint32(last), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reuseport map: drain %d: %w", i, err)
	}
	m.order[pos] = m.order[last]
	m.order = m.order[:last]
	return nil
}

// Live returns the indices new connections go to.
func (m *Supervisor) Live() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int, len(m.order))
	for i, v := range m.order {
		out[i] = int(v)
	}
	return out
}

// ProgramID is the kernel's id of the steering program (as tuple who shows).
func (m *Supervisor) ProgramID() (uint32, error) {
	info, err := m.prog.Info()
	if err != nil {
		return 0, err
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("program id not available")
	}
	return uint32(id), nil
}

// Close releases the supervisor's handles. A program already attached stays
// with the group (the kernel holds it and its maps) until the group ends,
// steering as last set.
func (m *Supervisor) Close() error {
	return errors.Join(m.prog.Close(), m.socks.Close(), m.live.Close())
}
