package cli

import (
	"bufio"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/socktab"
)

// socketsFrom turns fuzz bytes into sockets, 24 bytes each: protocol and
// state bits, both families (v4-mapped IPv6 included), any ports, small
// and huge queues.
func socketsFrom(b []byte) []socktab.Socket {
	var socks []socktab.Socket
	for ; len(b) >= 24; b = b[24:] {
		s := socktab.Socket{Proto: inet.TCP, Family: inet.IPv4, State: socktab.State(b[0] % 16)}
		if b[1]&1 != 0 {
			s.Proto = inet.UDP
		}
		lport, rport := binary.BigEndian.Uint16(b[2:]), binary.BigEndian.Uint16(b[4:])
		if b[1]&2 != 0 {
			lport %= 10 // short ports and "*"
		}
		la, ra := netip.AddrFrom4([4]byte(b[6:10])), netip.AddrFrom4([4]byte(b[10:14]))
		switch b[1] >> 2 & 3 {
		case 1: // IPv6 with the bytes spread out
			var a, r [16]byte
			copy(a[:], b[6:14])
			copy(r[8:], b[6:14])
			la, ra = netip.AddrFrom16(a), netip.AddrFrom16(r)
			s.Family = inet.IPv6
		case 2: // v4-mapped
			la, ra = netip.AddrFrom16(la.As16()), netip.AddrFrom16(ra.As16())
			s.Family = inet.IPv6
		}
		s.Local, s.Remote = netip.AddrPortFrom(la, lport), netip.AddrPortFrom(ra, rport)
		s.RecvQ, s.SendQ = binary.BigEndian.Uint32(b[14:]), uint32(b[18])
		if b[1]&16 != 0 {
			s.RecvQ %= 1000
		}
		socks = append(socks, s)
	}
	return socks
}

// checkRowsLikeTable fails unless writeRows prints rows byte for byte as
// writeTable prints the same sockets without optional columns.
func checkRowsLikeTable(t *testing.T, socks []socktab.Socket) {
	t.Helper()
	var want, got strings.Builder
	w := bufio.NewWriter(&want)
	if err := writeTable(w, socks, columns{}); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	rows := make([]socktab.Row, len(socks))
	for i := range socks {
		rows[i] = socktab.RowOf(&socks[i])
	}
	w = bufio.NewWriterSize(&got, 4096) // small: rows straddle flushes
	if err := writeRows(w, rows); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if got.String() != want.String() {
		t.Fatalf("rows printed\n%s\nthe table\n%s", got.String(), want.String())
	}
}

// TestWriteRowsLikeTable: the plain listing's fast formatter prints what
// the table writer prints (the output of `tuple ls` did not change).
func TestWriteRowsLikeTable(t *testing.T) {
	checkRowsLikeTable(t, nil)
	var b []byte
	for i := range 24 * 600 {
		b = append(b, byte(i*7+i/24*13), byte(i*31>>3))
	}
	checkRowsLikeTable(t, socketsFrom(b))
	checkRowsLikeTable(t, []socktab.Socket{
		{Proto: inet.TCP, Family: inet.IPv4, State: socktab.Established, Local: netip.MustParseAddrPort("255.255.255.255:65535"),
			Remote: netip.MustParseAddrPort("0.0.0.0:0"), RecvQ: 4294967295, SendQ: 10000000},
		{Proto: inet.UDP, Family: inet.IPv4, State: socktab.Close, Local: netip.MustParseAddrPort("10.0.0.1:53"),
			Remote: netip.MustParseAddrPort("0.0.0.0:0")},
		{Proto: inet.TCP, Family: inet.IPv6, State: socktab.BoundInactive, Local: netip.MustParseAddrPort("[fd00::1]:7000"),
			Remote: netip.AddrPortFrom(netip.IPv6Unspecified(), 0)},
		{Proto: inet.TCP, Family: inet.IPv6, State: socktab.NewSynRecv, Local: netip.MustParseAddrPort("[::ffff:127.0.0.1]:80"),
			Remote: netip.MustParseAddrPort("[::ffff:127.0.0.1]:40000")},
	})
}

func FuzzWriteRows(f *testing.F) {
	f.Add(make([]byte, 48))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRowsLikeTable(t, socketsFrom(b))
	})
}
