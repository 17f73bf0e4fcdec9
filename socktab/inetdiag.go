package socktab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/prefault"
)

// This file is the wire format of netlink sock_diag for inet sockets
// (include/uapi/linux/inet_diag.h): the request we send and the replies we
// parse. mdlayher/netlink carries the messages; it has no inet_diag types, and
// the few structures below are small and fixed, so they are encoded by hand.
// All functions here are pure and length-checked.
//
// Multi-byte fields of these structures are in host byte order except ports
// and addresses, which are big endian.

const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY, the netlink message type
	// TCPDIAG_GETSOCK: the older request (struct inet_diag_req), kept by
	// the kernel for compatibility. It takes no family: one walk of the
	// TCP hash tables returns IPv4 and IPv6 sockets together, where
	// SOCK_DIAG_BY_FAMILY walks every table once per family.
	tcpDiagGetSock = 18

	afINET  = 2  // AF_INET
	afINET6 = 10 // AF_INET6

	reqV2Len   = 56 // sizeof(struct inet_diag_req_v2)
	reqV1Len   = 60 // sizeof(struct inet_diag_req), TCPDIAG_GETSOCK's request
	diagMsgLen = 72 // sizeof(struct inet_diag_msg)

	reqAttrBytecode = 1 // INET_DIAG_REQ_BYTECODE

	// Reply attributes (enum INET_DIAG_*).
	attrShutdown = 8  // INET_DIAG_SHUTDOWN, u8
	attrSkV6Only = 11 // INET_DIAG_SKV6ONLY, u8, IPv6 sockets in LISTEN or CLOSE
	attrSockopt  = 22 // INET_DIAG_SOCKOPT, struct inet_diag_sockopt (2 bytes)

	// Bytecode operations (enum INET_DIAG_BC_*).
	bcSrcEq = 11 // INET_DIAG_BC_S_EQ: local port equals the operand
	bcDstEq = 12 // INET_DIAG_BC_D_EQ: remote port equals the operand
)

var hostOrder = binary.NativeEndian

// diagRequest is one inet_diag_req_v2 dump request: one family and protocol,
// a state mask, and optional port filters the kernel applies itself.
type diagRequest struct {
	Family     uint8 // afINET or afINET6; 0 (TCP only): both, one TCPDIAG_GETSOCK walk
	Protocol   inet.Proto
	States     StateSet
	LocalPort  uint16 // 0: any
	RemotePort uint16 // 0: any
	Filter     []byte // compiled filter expression (Filter.bytecode), joined with and
}

// msgType is the netlink message type of the request, and of its replies.
func (r diagRequest) msgType() uint16 {
	if r.Family == 0 {
		return tcpDiagGetSock
	}
	return sockDiagByFamily
}

// marshal encodes the request as the payload of its message (msgType):
// struct inet_diag_req_v2 (SOCK_DIAG_BY_FAMILY), or struct inet_diag_req
// (TCPDIAG_GETSOCK) when Family is 0, followed, when a filter is set, by
// an INET_DIAG_REQ_BYTECODE attribute.
func (r diagRequest) marshal() []byte {
	bc := r.bytecode()
	if len(r.Filter) > 0 {
		patch(bc, len(r.Filter))
		bc = append(bc, r.Filter...)
	}
	n := reqV2Len
	if r.Family == 0 {
		n = reqV1Len
	}
	hdr := n
	if len(bc) > 0 {
		n += 4 + len(bc) // nlattr header + bytecode (a multiple of 4: no padding)
	}
	b := make([]byte, n)
	if r.Family == 0 {
		// inet_diag_req: family, src_len, dst_len, ext (all 0), id
		// (zero: every socket), states, dbs. The protocol is the
		// message type's.
		hostOrder.PutUint32(b[52:], uint32(r.States))
	} else {
		b[0] = r.Family
		b[1] = uint8(r.Protocol)
		b[2] = 0 // idiag_ext: no extensions; the attributes we read come unasked
		hostOrder.PutUint32(b[4:], uint32(r.States))
		// id (inet_diag_sockid) stays zero: a dump matches every socket;
		// the cookie must be INET_DIAG_NOCOOKIE only for exact lookups.
	}
	if len(bc) > 0 {
		hostOrder.PutUint16(b[hdr:], uint16(4+len(bc)))
		hostOrder.PutUint16(b[hdr+2:], reqAttrBytecode)
		copy(b[hdr+4:], bc)
	}
	return b
}

// bytecode returns the filter program for the request's port filters, nil
// when there are none.
//
// The kernel (net/ipv4/inet_diag.c, inet_diag_bc_run) runs the program as a
// chain of 4-byte ops {code u8, yes u8, no u16}: a true condition moves
// forward by "yes" bytes, a false one by "no" bytes, and the socket matches
// when the walk ends exactly at the program's end. A port comparison is two
// ops, the second holding the port in its "no" field. A "no" that jumps 4
// bytes past the end rejects; the kernel's audit allows exactly that.
// Each port condition is therefore {EQ, yes 8, no remaining+4}{0, 0, port}.
func (r diagRequest) bytecode() []byte {
	type cond struct {
		code uint8
		port uint16
	}
	var conds []cond
	if r.LocalPort != 0 {
		conds = append(conds, cond{bcSrcEq, r.LocalPort})
	}
	if r.RemotePort != 0 {
		conds = append(conds, cond{bcDstEq, r.RemotePort})
	}
	if len(conds) == 0 {
		return nil
	}
	b := make([]byte, 8*len(conds))
	for i, c := range conds {
		op := b[8*i:]
		remaining := len(b) - 8*i
		op[0] = c.code
		op[1] = 8
		hostOrder.PutUint16(op[2:], uint16(remaining+4))
		hostOrder.PutUint16(op[6:], c.port)
	}
	return b
}

var errShort = errors.New("short message")

// parseInetDiagMsg decodes one inet_diag_msg with its attributes (the payload
// of a SOCK_DIAG_BY_FAMILY reply) into s. proto is the protocol the dump was
// for; the message does not carry it.
func parseInetDiagMsg(b []byte, proto inet.Proto, s *Socket) error {
	if len(b) < diagMsgLen {
		return fmt.Errorf("inet_diag_msg: %w: %d bytes, want %d", errShort, len(b), diagMsgLen)
	}
	*s = Socket{Proto: proto, State: State(b[1])}
	var addrLen int
	switch b[0] {
	case afINET:
		s.Family, addrLen = inet.IPv4, 4
	case afINET6:
		s.Family, addrLen = inet.IPv6, 16
	default:
		return fmt.Errorf("inet_diag_msg: unknown family %d", b[0])
	}
	id := b[4:52]
	sport := binary.BigEndian.Uint16(id[0:])
	dport := binary.BigEndian.Uint16(id[2:])
	s.Local = netip.AddrPortFrom(addrFrom(id[4:4+addrLen]), sport)
	s.Remote = netip.AddrPortFrom(addrFrom(id[20:20+addrLen]), dport)
	s.Dev = int(hostOrder.Uint32(id[36:]))
	s.Cookie = uint64(hostOrder.Uint32(id[40:])) | uint64(hostOrder.Uint32(id[44:]))<<32
	timer := b[2]
	expires := hostOrder.Uint32(b[52:])
	if timer != 0 {
		s.TimeLeft = time.Duration(expires) * time.Millisecond
	}
	s.RecvQ = hostOrder.Uint32(b[56:])
	s.SendQ = hostOrder.Uint32(b[60:])
	s.UID = hostOrder.Uint32(b[64:])
	s.Inode = uint64(hostOrder.Uint32(b[68:]))
	if proto == inet.TCP && s.State == Close {
		// The kernel dumps bound-only TCP sockets (asked for with state
		// bit 13, TCP_BOUND_INACTIVE) with their real state, TCP_CLOSE;
		// a TCP socket in CLOSE is in no other dumped table.
		s.State = BoundInactive
	}
	if err := parseDiagAttrs(b[diagMsgLen:], s); err != nil {
		return err
	}
	if !s.V6Only.Known {
		s.V6Only.Reason = reasonV6OnlyNotReported
		if s.Family == inet.IPv4 {
			s.V6Only.Reason = reasonIPv4
		}
	}
	return nil
}

// parseDiagRow decodes one inet_diag_msg into r, as parseInetDiagMsg does
// for a Socket but only what a Row holds: the attributes that follow the
// message are not read.
func parseDiagRow(b []byte, proto inet.Proto, r *Row) error {
	if len(b) < diagMsgLen {
		return fmt.Errorf("inet_diag_msg: %w: %d bytes, want %d", errShort, len(b), diagMsgLen)
	}
	*r = Row{proto: proto, state: State(b[1])}
	id := b[4:52]
	switch b[0] {
	case afINET:
		r.family = inet.IPv4
		copy(r.local[:4], id[4:8])
		copy(r.remote[:4], id[20:24])
	case afINET6:
		r.family = inet.IPv6
		copy(r.local[:], id[4:20])
		copy(r.remote[:], id[20:36])
	default:
		return fmt.Errorf("inet_diag_msg: unknown family %d", b[0])
	}
	r.lport = binary.BigEndian.Uint16(id[0:])
	r.rport = binary.BigEndian.Uint16(id[2:])
	r.recvQ = hostOrder.Uint32(b[56:])
	r.sendQ = hostOrder.Uint32(b[60:])
	if proto == inet.TCP && r.state == Close {
		r.state = BoundInactive // as in parseInetDiagMsg
	}
	return nil
}

// addrFrom returns the address of a 4- or 16-byte big-endian field.
func addrFrom(b []byte) netip.Addr {
	if len(b) == 4 {
		return netip.AddrFrom4([4]byte(b))
	}
	return netip.AddrFrom16([16]byte(b))
}

// parseDiagAttrs reads the netlink attributes after an inet_diag_msg. Each
// is {len u16 (header included), type u16, data}, padded to 4 bytes.
// Unknown attributes are skipped.
func parseDiagAttrs(b []byte, s *Socket) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return fmt.Errorf("inet_diag attribute: %w: %d bytes", errShort, len(b))
		}
		n := int(hostOrder.Uint16(b))
		typ := hostOrder.Uint16(b[2:]) & 0x3fff // drop NLA_F_NESTED / NLA_F_NET_BYTEORDER
		if n < 4 || n > len(b) {
			return fmt.Errorf("inet_diag attribute %d: bad length %d of %d bytes", typ, n, len(b))
		}
		data := b[4:n]
		switch typ {
		case attrSkV6Only:
			if len(data) >= 1 {
				s.V6Only = Bool{Known: true, Value: data[0] != 0}
			}
		case attrSockopt:
			if len(data) >= 2 {
				freebind, noPort := sockoptBits(data)
				s.Options.Freebind = Bool{Known: true, Value: freebind}
				s.Options.BindAddressNoPort = Bool{Known: true, Value: noPort}
			}
		}
		adv := (n + 3) &^ 3
		if adv > len(b) {
			adv = len(b)
		}
		b = b[adv:]
	}
	return nil
}

// sockoptBits decodes struct inet_diag_sockopt, two bytes of C bit-fields:
// byte 0 recverr, is_icsk, freebind, hdrincl, mc_loop, transparent, mc_all,
// nodefrag; byte 1 bind_address_no_port, recverr_rfc4884, defer_connect.
// C compilers allocate bit-fields from the least significant bit on
// little-endian machines and from the most significant one on big-endian.
func sockoptBits(b []byte) (freebind, bindAddressNoPort bool) {
	if bigEndian {
		return b[0]&(0x80>>2) != 0, b[1]&0x80 != 0
	}
	return b[0]&(1<<2) != 0, b[1]&1 != 0
}

var bigEndian = hostOrder.Uint16([]byte{0, 1}) == 1

// Netlink framing (include/uapi/linux/netlink.h).
const (
	nlmsgHdrLen = 16 // struct nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32
	nlmsgError  = 2  // NLMSG_ERROR: payload starts with a negative errno
	nlmsgDone   = 3  // NLMSG_DONE: end of a dump; its payload is an int, negative errno when the dump failed

	nlmFDumpIntr = 0x10 // NLM_F_DUMP_INTR: the table changed during the dump, which may have missed or repeated entries
)

// walkNetlink calls fn for each netlink message in one datagram b with
// sequence number seq (others are stale replies and skipped), with the
// message's flags. An NLMSG_ERROR with a non-zero errno, or an NLMSG_DONE
// carrying one (the dump failed part way), ends the walk with that errno as
// a syscall.Errno.
func walkNetlink(b []byte, seq uint32, fn func(typ, flags uint16, payload []byte) error) error {
	for len(b) >= nlmsgHdrLen {
		n := int(hostOrder.Uint32(b))
		if n < nlmsgHdrLen || n > len(b) {
			return fmt.Errorf("netlink message: bad length %d of %d bytes", n, len(b))
		}
		typ, flags := hostOrder.Uint16(b[4:]), hostOrder.Uint16(b[6:])
		payload := b[nlmsgHdrLen:n]
		if hostOrder.Uint32(b[8:]) == seq {
			switch {
			case typ == nlmsgError && len(payload) < 4:
				return fmt.Errorf("netlink error message: %w", errShort)
			case typ == nlmsgError:
				if errno := -int32(hostOrder.Uint32(payload)); errno != 0 {
					return syscall.Errno(errno)
				}
			case typ == nlmsgDone && len(payload) >= 4 && int32(hostOrder.Uint32(payload)) < 0:
				return fmt.Errorf("dump ended with an error (NLMSG_DONE): %w", syscall.Errno(-int32(hostOrder.Uint32(payload))))
			default:
				if err := fn(typ, flags, payload); err != nil {
					return err
				}
			}
		}
		adv := (n + 3) &^ 3
		if adv > len(b) {
			adv = len(b)
		}
		b = b[adv:]
	}
	return nil
}

// endsDump reports whether datagram b holds the last message of the dump
// with sequence number seq: NLMSG_DONE or NLMSG_ERROR (the decoder says
// which and why), or a message too malformed to walk past.
func endsDump(b []byte, seq uint32) bool {
	for len(b) >= nlmsgHdrLen {
		n := int(hostOrder.Uint32(b))
		if n < nlmsgHdrLen || n > len(b) {
			return true
		}
		if typ := hostOrder.Uint16(b[4:]); hostOrder.Uint32(b[8:]) == seq && (typ == nlmsgDone || typ == nlmsgError) {
			return true
		}
		b = b[min((n+3)&^3, len(b)):]
	}
	return len(b) != 0
}

// errDumpInterrupted is a dump the kernel flagged NLM_F_DUMP_INTR: the
// table changed while it was read, so sockets may be missing or repeated.
var errDumpInterrupted = errors.New("dump interrupted (NLM_F_DUMP_INTR): the socket table changed while it was read")

// element is what a dump decodes each inet_diag_msg into.
type element interface{ Socket | Row }

// dumpReader follows one sock_diag dump across its datagrams, decoding
// each inet_diag_msg with parse into the next element of socks.
type dumpReader[T element] struct {
	seq         uint32
	proto       inet.Proto
	parse       func(b []byte, proto inet.Proto, out *T) error // overwrites all of *out
	socks       []T
	done        bool // NLMSG_DONE seen
	interrupted bool // some message carried NLM_F_DUMP_INTR
}

// datagram takes one datagram of the dump.
func (d *dumpReader[T]) datagram(b []byte) error {
	return walkNetlink(b, d.seq, func(typ, flags uint16, payload []byte) error {
		d.interrupted = d.interrupted || flags&nlmFDumpIntr != 0
		switch typ {
		case nlmsgDone:
			d.done = true
		case sockDiagByFamily, tcpDiagGetSock: // replies carry the request's type
			// Extend without zeroing the element first: parse writes
			// all of it (zeroing a Socket was a quarter of a listing).
			// A full table doubles into memory backed in one call
			// (a port's table starts small and grows: who beside
			// 9,000 connections spent a tenth of its time faulting
			// in the copies' pages).
			n := len(d.socks)
			if n == cap(d.socks) {
				grown := make([]T, n, 2*n+16)
				prefault.Slice(grown)
				copy(grown, d.socks)
				d.socks = grown
			}
			d.socks = d.socks[:n+1]
			return d.parse(payload, d.proto, &d.socks[n])
		}
		return nil
	})
}

// err is the dump's verdict once done: errDumpInterrupted when the kernel
// said the dump may be inconsistent. The dump is read to its end first, so
// the socket can take the next request.
func (d *dumpReader[T]) err() error {
	if d.interrupted {
		return errDumpInterrupted
	}
	return nil
}
