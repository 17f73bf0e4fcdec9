package socktab

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tuple-net/tuple/inet"
)

// diagMsgFixture builds an inet_diag_msg the way the kernel lays it out,
// with the given attributes appended.
func diagMsgFixture(family, state, timer uint8, sport, dport uint16, src, dst []byte, ifindex, expires, rq, wq, uid, inode uint32, cookie uint64, attrs ...[]byte) []byte {
	b := make([]byte, diagMsgLen)
	b[0], b[1], b[2] = family, state, timer
	binary.BigEndian.PutUint16(b[4:], sport)
	binary.BigEndian.PutUint16(b[6:], dport)
	copy(b[8:], src)
	copy(b[24:], dst)
	hostOrder.PutUint32(b[40:], ifindex)
	hostOrder.PutUint32(b[44:], uint32(cookie))
	hostOrder.PutUint32(b[48:], uint32(cookie>>32))
	hostOrder.PutUint32(b[52:], expires)
	hostOrder.PutUint32(b[56:], rq)
	hostOrder.PutUint32(b[60:], wq)
	hostOrder.PutUint32(b[64:], uid)
	hostOrder.PutUint32(b[68:], inode)
	for _, a := range attrs {
		b = append(b, a...)
	}
	return b
}

func attr(typ uint16, data ...byte) []byte {
	b := make([]byte, 4, 4+len(data)+3)
	hostOrder.PutUint16(b, uint16(4+len(data)))
	hostOrder.PutUint16(b[2:], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestParseInetDiagMsg(t *testing.T) {
	v6 := netip.MustParseAddr("fd00::1").As16()
	mapped := netip.MustParseAddr("::ffff:127.0.0.1").As16()
	sockopt := []byte{1 << 2, 1} // freebind, bind_address_no_port (little-endian bit-fields)
	if bigEndian {
		sockopt = []byte{0x80 >> 2, 0x80}
	}
	tests := []struct {
		name  string
		msg   []byte
		proto inet.Proto
		want  Socket
	}{{
		name:  "ipv4 time-wait",
		msg:   diagMsgFixture(afINET, 6, 3, 8080, 40000, []byte{127, 0, 0, 1}, []byte{127, 0, 0, 2}, 0, 59500, 0, 0, 0, 0, 0x100000002),
		proto: inet.TCP,
		want: Socket{Proto: inet.TCP, Family: inet.IPv4, State: TimeWait,
			Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.2:40000"),
			Cookie: 0x100000002, TimeLeft: 59500 * time.Millisecond, V6Only: Bool{Reason: reasonIPv4}},
	}, {
		name: "ipv6 listener with v6only and sockopt",
		msg: diagMsgFixture(afINET6, 10, 0, 443, 0, v6[:], make([]byte, 16), 1, 0, 3, 128, 1000, 4242, 7,
			attr(attrShutdown, 0), attr(attrSkV6Only, 1), attr(attrSockopt, sockopt...)),
		proto: inet.TCP,
		want: Socket{Proto: inet.TCP, Family: inet.IPv6, State: Listen,
			Local: netip.MustParseAddrPort("[fd00::1]:443"), Remote: netip.AddrPortFrom(netip.IPv6Unspecified(), 0),
			UID: 1000, Inode: 4242, Cookie: 7, RecvQ: 3, SendQ: 128, Dev: 1,
			V6Only:  Bool{Known: true, Value: true},
			Options: Options{Freebind: Bool{Known: true, Value: true}, BindAddressNoPort: Bool{Known: true, Value: true}}},
	}, {
		name:  "v4-mapped udp, unknown attribute skipped",
		msg:   diagMsgFixture(afINET6, 1, 0, 53, 5353, mapped[:], mapped[:], 0, 0, 0, 0, 0, 9, 1, attr(99, 1, 2, 3, 4, 5)),
		proto: inet.UDP,
		want: Socket{Proto: inet.UDP, Family: inet.IPv6, State: Established,
			Local: netip.MustParseAddrPort("[::ffff:127.0.0.1]:53"), Remote: netip.MustParseAddrPort("[::ffff:127.0.0.1]:5353"),
			Inode: 9, Cookie: 1, V6Only: Bool{Reason: reasonV6OnlyNotReported}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Socket
			if err := parseInetDiagMsg(tt.msg, tt.proto, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("-want +got:\n%s", diff)
			}
			// The compact decoder agrees on what a row holds.
			var row Row
			if err := parseDiagRow(tt.msg, tt.proto, &row); err != nil || row != RowOf(&tt.want) {
				t.Errorf("row %+v, err %v; want %+v", row, err, RowOf(&tt.want))
			}
		})
	}
}

func TestParseInetDiagMsgRejectsBadInput(t *testing.T) {
	good := diagMsgFixture(afINET, 1, 0, 1, 2, []byte{1, 2, 3, 4}, []byte{5, 6, 7, 8}, 0, 0, 0, 0, 0, 0, 0)
	bad := map[string][]byte{
		"short":          good[:diagMsgLen-1],
		"family":         append([]byte{99}, good[1:]...),
		"attr too long":  append(bytes.Clone(good), 200, 0, 8, 0, 1, 0, 0, 0),
		"attr len < 4":   append(bytes.Clone(good), 2, 0, 8, 0),
		"truncated attr": append(bytes.Clone(good), 8, 0),
	}
	for name, b := range bad {
		var s Socket
		if err := parseInetDiagMsg(b, inet.TCP, &s); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestRequestMarshal(t *testing.T) {
	r := diagRequest{Family: afINET6, Protocol: inet.TCP, States: States(Listen, BoundInactive), LocalPort: 8080, RemotePort: 443}
	b := r.marshal()
	if len(b) != reqV2Len+4+16 {
		t.Fatalf("length %d, want %d", len(b), reqV2Len+4+16)
	}
	if b[0] != afINET6 || b[1] != 6 || hostOrder.Uint32(b[4:]) != 1<<10|1<<13 {
		t.Errorf("header % x", b[:8])
	}
	if !bytes.Equal(b[8:reqV2Len], make([]byte, reqV2Len-8)) {
		t.Errorf("socket id not zero: % x", b[8:reqV2Len])
	}
	if hostOrder.Uint16(b[reqV2Len:]) != 20 || hostOrder.Uint16(b[reqV2Len+2:]) != reqAttrBytecode {
		t.Errorf("bytecode attribute header % x", b[reqV2Len:reqV2Len+4])
	}
	// {S_EQ, yes 8, no 20}{port 8080}{D_EQ, yes 8, no 12}{port 443}
	want := []struct {
		code, yes uint8
		no        uint16
	}{{bcSrcEq, 8, 20}, {0, 0, 8080}, {bcDstEq, 8, 12}, {0, 0, 443}}
	bc := b[reqV2Len+4:]
	for i, w := range want {
		op := bc[4*i:]
		if op[0] != w.code || op[1] != w.yes || hostOrder.Uint16(op[2:]) != w.no {
			t.Errorf("op %d: % x, want %+v", i, op[:4], w)
		}
	}
	if got := (diagRequest{Family: afINET, Protocol: inet.UDP, States: AllStates}).marshal(); len(got) != reqV2Len {
		t.Errorf("no filter: length %d, want %d", len(got), reqV2Len)
	}
}

// TestRequestMarshalBothFamilies: with no family the request is struct
// inet_diag_req (TCPDIAG_GETSOCK): the states at offset 52, the bytecode
// attribute after its 60 bytes.
func TestRequestMarshalBothFamilies(t *testing.T) {
	r := diagRequest{Protocol: inet.TCP, States: States(Listen, BoundInactive), LocalPort: 8080}
	if r.msgType() != tcpDiagGetSock {
		t.Fatalf("message type %d, want %d", r.msgType(), tcpDiagGetSock)
	}
	b := r.marshal()
	if len(b) != reqV1Len+4+8 {
		t.Fatalf("length %d, want %d", len(b), reqV1Len+4+8)
	}
	if !bytes.Equal(b[:52], make([]byte, 52)) || hostOrder.Uint32(b[52:]) != 1<<10|1<<13 || hostOrder.Uint32(b[56:]) != 0 {
		t.Errorf("header % x", b[:reqV1Len])
	}
	if hostOrder.Uint16(b[reqV1Len:]) != 12 || hostOrder.Uint16(b[reqV1Len+2:]) != reqAttrBytecode {
		t.Errorf("bytecode attribute header % x", b[reqV1Len:reqV1Len+4])
	}
	if (diagRequest{Family: afINET, Protocol: inet.TCP}).msgType() != sockDiagByFamily {
		t.Error("a request with a family is not SOCK_DIAG_BY_FAMILY")
	}
}

func TestBytecodeSemantics(t *testing.T) {
	for _, r := range []diagRequest{{LocalPort: 80}, {RemotePort: 443}, {LocalPort: 80, RemotePort: 443}} {
		bc := r.bytecode()
		for _, c := range []struct{ s, d uint16 }{{80, 443}, {80, 1}, {1, 443}, {1, 1}} {
			want := (r.LocalPort == 0 || c.s == r.LocalPort) && (r.RemotePort == 0 || c.d == r.RemotePort)
			if got := runBytecode(bc, diagEntry{family: inet.IPv4, sport: int(c.s), dport: int(c.d)}); got != want {
				t.Errorf("filter %+v on %d->%d: %v, want %v", r, c.s, c.d, got, want)
			}
		}
	}
}

// TestBytecodePortsAndFilter: the request's port conditions and a filter
// expression are joined with and in one program the kernel accepts.
func TestBytecodePortsAndFilter(t *testing.T) {
	f, err := ParseFilter([]string{"dport = :443 or src 10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	r := diagRequest{Family: afINET, Protocol: inet.TCP, States: AllStates, LocalPort: 80, Filter: f.bytecode()}
	b := r.marshal()
	bc := b[reqV2Len+4:]
	if !auditBytecode(bc) {
		t.Fatalf("bytecode % x fails the audit", bc)
	}
	for _, c := range []struct {
		s, d int
		src  string
		want bool
	}{{80, 443, "127.0.0.1", true}, {80, 1, "10.1.1.1", true}, {80, 1, "127.0.0.1", false}, {81, 443, "10.1.1.1", false}} {
		e := diagEntry{family: inet.IPv4, sport: c.s, dport: c.d, saddr: netip.MustParseAddr(c.src), daddr: netip.MustParseAddr("192.0.2.1")}
		if got := runBytecode(bc, e); got != c.want {
			t.Errorf("%+v: %v, want %v", c, got, c.want)
		}
	}
}

func FuzzParseInetDiagMsg(f *testing.F) {
	f.Add(diagMsgFixture(afINET, 6, 3, 8080, 40000, []byte{127, 0, 0, 1}, []byte{127, 0, 0, 2}, 0, 59500, 0, 0, 0, 0, 1))
	f.Add(diagMsgFixture(afINET6, 10, 0, 443, 0, make([]byte, 16), make([]byte, 16), 1, 0, 3, 128, 1000, 4242, 7,
		attr(attrSkV6Only, 1), attr(attrSockopt, 4, 1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Socket
		if err := parseInetDiagMsg(b, inet.TCP, &s); err != nil {
			return
		}
		if s.Family == inet.IPv4 && !s.Local.Addr().Is4() {
			t.Fatalf("IPv4 socket with address %v", s.Local)
		}
	})
}

// FuzzParseDiagRow: wherever the full decoder reads a message, the row
// decoder reads the same protocol, state, addresses, ports and queues
// (it skips the attributes, so it may read what the full one rejects).
func FuzzParseDiagRow(f *testing.F) {
	f.Add(diagMsgFixture(afINET, 6, 3, 8080, 40000, []byte{127, 0, 0, 1}, []byte{127, 0, 0, 2}, 0, 59500, 0, 0, 0, 0, 1), false)
	f.Add(diagMsgFixture(afINET6, 7, 0, 443, 0, make([]byte, 16), make([]byte, 16), 1, 0, 3, 128, 1000, 4242, 7,
		attr(attrSkV6Only, 1), attr(attrSockopt, 4, 1)), true)
	f.Fuzz(func(t *testing.T, b []byte, udp bool) {
		proto := inet.TCP
		if udp {
			proto = inet.UDP
		}
		var s Socket
		var r Row
		full := parseInetDiagMsg(b, proto, &s)
		rowErr := parseDiagRow(b, proto, &r)
		if full == nil && rowErr != nil {
			t.Fatalf("full decoder read it, row decoder: %v", rowErr)
		}
		if full == nil && r != RowOf(&s) {
			t.Fatalf("row %+v, from the socket %+v", r, RowOf(&s))
		}
		if rowErr == nil && (r.Local().Addr().Is4() != (r.Family() == inet.IPv4) || r.Proto() != proto) {
			t.Fatalf("row %+v: family and address disagree", r)
		}
	})
}
