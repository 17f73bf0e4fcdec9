package socktab

import (
	"net/netip"

	"github.com/tuple-net/tuple/inet"
)

// The inet_diag bytecode (net/ipv4/inet_diag.c) is a chain of 4-byte ops
// {code u8, yes u8, no u16}: a true condition moves forward by "yes"
// bytes, a false one by "no", and a socket matches when the walk ends
// exactly at the program's end; a jump 4 bytes past the end rejects. The
// compiler below is the scheme ss uses: a program of length L accepts by
// reaching L and rejects by jumping to L+4; "and" is concatenation with the
// first part's rejections moved to the new end, "or" puts an always-false
// JMP between the parts, "not" one after its operand.
const (
	bcNop   = 0 // INET_DIAG_BC_NOP
	bcJmp   = 1 // INET_DIAG_BC_JMP: always takes "no"
	bcSrcGe = 2
	bcSrcLe = 3
	bcDstGe = 4
	bcDstLe = 5
	bcSCond = 7 // INET_DIAG_BC_S_COND: struct inet_diag_hostcond follows
	bcDCond = 8
	// bcSrcEq and bcDstEq (11, 12) are in inetdiag.go.

	hostcondLen = 8 // struct inet_diag_hostcond without the address
)

// bytecode compiles f's expression (states go in the request's mask), nil
// when it has none.
func (f *Filter) bytecode() []byte {
	if f == nil || f.expr == nil {
		return nil
	}
	return compile(f.expr)
}

func putOp(b []byte, code uint8, yes uint8, no uint16) {
	b[0], b[1] = code, yes
	hostOrder.PutUint16(b[2:], no)
}

func compile(n *node) []byte {
	switch n.op {
	case opAnd:
		a, b := compile(n.a), compile(n.b)
		patch(a, len(b))
		return append(a, b...)
	case opOr:
		a, b := compile(n.a), compile(n.b)
		out := make([]byte, len(a)+4+len(b))
		copy(out, a)
		putOp(out[len(a):], bcJmp, 4, uint16(len(b)+4))
		copy(out[len(a)+4:], b)
		return out
	case opNot:
		a := compile(n.a)
		out := make([]byte, len(a)+4)
		copy(out, a)
		putOp(out[len(a):], bcJmp, 4, 8)
		return out
	}
	switch n.kind {
	case condSport, condDport:
		src := n.kind == condSport
		code := func(s, d uint8) uint8 {
			if src {
				return s
			}
			return d
		}
		port := func(code uint8) []byte {
			b := make([]byte, 8)
			putOp(b, code, 8, 12)
			hostOrder.PutUint16(b[6:], uint16(n.port))
			return b
		}
		switch n.cmp {
		case cmpEq:
			return port(code(bcSrcEq, bcDstEq))
		case cmpGe:
			return port(code(bcSrcGe, bcDstGe))
		case cmpLe:
			return port(code(bcSrcLe, bcDstLe))
		case cmpNe:
			return compile(&node{op: opNot, a: &node{op: opCond, kind: n.kind, cmp: cmpEq, port: n.port}})
		case cmpGt:
			return compile(&node{op: opNot, a: &node{op: opCond, kind: n.kind, cmp: cmpLe, port: n.port}})
		case cmpLt:
			return compile(&node{op: opNot, a: &node{op: opCond, kind: n.kind, cmp: cmpGe, port: n.port}})
		}
	}
	// An address condition: op, hostcond {family, prefix_len, port s32},
	// the address.
	var addr []byte
	family, bits := uint8(0), uint8(0)
	if n.prefix.IsValid() {
		a := n.prefix.Addr()
		if a.Is4() {
			family = afINET
			b4 := a.As4()
			addr = b4[:]
		} else {
			family = afINET6
			b16 := a.As16()
			addr = b16[:]
		}
		bits = uint8(n.prefix.Bits())
	}
	l := 4 + hostcondLen + len(addr)
	b := make([]byte, l)
	code := uint8(bcSCond)
	if n.kind == condDst {
		code = bcDCond
	}
	putOp(b, code, uint8(l), uint16(l+4))
	b[4], b[5] = family, bits
	hostOrder.PutUint32(b[8:], uint32(int32(n.port)))
	copy(b[12:], addr)
	return b
}

// patch moves a program's rejections (jumps to its length+4) to the end of
// a longer program that appends reloc bytes after it.
func patch(b []byte, reloc int) {
	for pos := 0; pos < len(b); {
		yes := int(b[pos+1])
		no := int(hostOrder.Uint16(b[pos+2:]))
		if b[pos] != bcNop && pos+no == len(b)+4 {
			hostOrder.PutUint16(b[pos+2:], uint16(no+reloc))
		}
		if yes < 4 {
			return // malformed; the audit rejects it
		}
		pos += yes
	}
}

// diagEntry is what the kernel's bytecode sees of a socket.
type diagEntry struct {
	family       inet.Family
	sport, dport int
	saddr, daddr netip.Addr
}

// runBytecode interprets bc over e as inet_diag_bc_run does. It is the
// kernel's side of the tests (and documents it).
func runBytecode(bc []byte, e diagEntry) bool {
	pos, n := 0, len(bc)
	for n > 0 {
		if pos+4 > len(bc) {
			return false
		}
		code, yesLen, noLen := bc[pos], int(bc[pos+1]), int(hostOrder.Uint16(bc[pos+2:]))
		yes := true
		switch code {
		case bcNop:
		case bcJmp:
			yes = false
		case bcSrcGe, bcSrcLe, bcDstGe, bcDstLe, bcSrcEq, bcDstEq:
			if pos+8 > len(bc) {
				return false
			}
			v := int(hostOrder.Uint16(bc[pos+6:]))
			switch code {
			case bcSrcGe:
				yes = e.sport >= v
			case bcSrcLe:
				yes = e.sport <= v
			case bcDstGe:
				yes = e.dport >= v
			case bcDstLe:
				yes = e.dport <= v
			case bcSrcEq:
				yes = e.sport == v
			case bcDstEq:
				yes = e.dport == v
			}
		case bcSCond, bcDCond:
			yes = runHostCond(bc[pos:], code == bcSCond, e)
		default:
			return false
		}
		if yes {
			pos, n = pos+yesLen, n-yesLen
		} else {
			pos, n = pos+noLen, n-noLen
		}
	}
	return n == 0
}

func runHostCond(b []byte, src bool, e diagEntry) bool {
	family, bits := b[4], int(b[5])
	port := int(int32(hostOrder.Uint32(b[8:])))
	addr, p := e.daddr, e.dport
	if src {
		addr, p = e.saddr, e.sport
	}
	if port != -1 && port != p {
		return false
	}
	var cond netip.Addr
	switch family {
	case 0:
		return true
	case afINET:
		cond = netip.AddrFrom4([4]byte(b[12:16]))
	case afINET6:
		cond = netip.AddrFrom16([16]byte(b[12:28]))
	}
	entryFamily := uint8(afINET)
	if e.family == inet.IPv6 {
		entryFamily = afINET6
	}
	if family != entryFamily {
		if entryFamily == afINET6 && family == afINET && addr.Is4In6() {
			return netip.PrefixFrom(cond, bits).Contains(addr.Unmap())
		}
		return false
	}
	if bits == 0 {
		return true
	}
	return netip.PrefixFrom(cond, bits).Contains(addr)
}

// auditBytecode checks bc as inet_diag_bc_audit does before the kernel
// runs it: every op's jumps are in range and 4-aligned, conditions are
// complete.
func auditBytecode(bc []byte) bool {
	pos, n := 0, len(bc)
	for n > 0 {
		if n < 4 {
			return false
		}
		code, yes, no := bc[pos], int(bc[pos+1]), int(hostOrder.Uint16(bc[pos+2:]))
		minLen := 4
		switch code {
		case bcSCond, bcDCond:
			if n < 4+hostcondLen {
				return false
			}
			alen := map[uint8]int{0: 0, afINET: 4, afINET6: 16}
			l, ok := alen[bc[pos+4]]
			if !ok || int(bc[pos+5]) > 8*l {
				return false
			}
			minLen = 4 + hostcondLen + l
			if n < minLen {
				return false
			}
		case bcSrcEq, bcSrcGe, bcSrcLe, bcDstEq, bcDstGe, bcDstLe:
			minLen = 8
			if n < minLen {
				return false
			}
		case bcJmp, bcNop:
		default:
			return false
		}
		if code != bcNop {
			if no < minLen || no > n+4 || no&3 != 0 {
				return false
			}
		}
		if yes < minLen || yes > n+4 || yes&3 != 0 {
			return false
		}
		pos, n = pos+yes, n-yes
	}
	return true
}
