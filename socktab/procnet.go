package socktab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/tuple-net/tuple/inet"
)

// userHZ is the unit of the timer column of /proc/net/tcp (clock_t ticks,
// USER_HZ, 100 on every Linux architecture).
const userHZ = 100

// parseProcNet parses the text of /proc/net/{tcp,tcp6,udp,udp6} and appends
// one Socket per line to out. order is the byte order of the machine that
// wrote the file: the kernel prints each 32-bit word of an address as a hex
// number in host order. The first line (the header) is skipped.
//
// Line format (net/ipv4/tcp_ipv4.c get_tcp4_sock, udp.c udp4_format_sock):
//
//	sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
func parseProcNet(b []byte, proto inet.Proto, family inet.Family, order binary.ByteOrder, out []Socket) ([]Socket, error) {
	lineNo := 0
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		lineNo++
		if lineNo == 1 || len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		s, err := parseProcNetLine(line, proto, family, order)
		if err != nil {
			return out, fmt.Errorf("line %d: %w", lineNo, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func parseProcNetLine(line []byte, proto inet.Proto, family inet.Family, order binary.ByteOrder) (Socket, error) {
	var f [10][]byte
	n := 0
	for _, field := range bytes.Fields(line) {
		if n == len(f) {
			break
		}
		f[n] = field
		n++
	}
	if n < len(f) {
		return Socket{}, fmt.Errorf("%d fields, want at least %d", n, len(f))
	}
	s := Socket{Proto: proto, Family: family, V6Only: Bool{Reason: reasonProcfs}}
	if family == inet.IPv4 {
		s.V6Only.Reason = reasonIPv4
	}
	var err error
	if s.Local, err = parseHexAddrPort(f[1], family, order); err != nil {
		return Socket{}, fmt.Errorf("local address: %w", err)
	}
	if s.Remote, err = parseHexAddrPort(f[2], family, order); err != nil {
		return Socket{}, fmt.Errorf("remote address: %w", err)
	}
	st, err := strconv.ParseUint(string(f[3]), 16, 8)
	if err != nil {
		return Socket{}, fmt.Errorf("state %q: %w", f[3], err)
	}
	s.State = State(st)
	tx, rx, err := hexPair(f[4])
	if err != nil {
		return Socket{}, fmt.Errorf("queues: %w", err)
	}
	s.SendQ, s.RecvQ = uint32(tx), uint32(rx)
	timer, when, err := hexPair(f[5])
	if err != nil {
		return Socket{}, fmt.Errorf("timer: %w", err)
	}
	if timer != 0 {
		s.TimeLeft = time.Duration(when) * (time.Second / userHZ)
	}
	uid, err := strconv.ParseUint(string(f[7]), 10, 32)
	if err != nil {
		return Socket{}, fmt.Errorf("uid %q: %w", f[7], err)
	}
	s.UID = uint32(uid)
	if s.Inode, err = strconv.ParseUint(string(f[9]), 10, 64); err != nil {
		return Socket{}, fmt.Errorf("inode %q: %w", f[9], err)
	}
	return s, nil
}

// hexPair parses "XXXXXXXX:YYYYYYYY".
func hexPair(b []byte) (uint64, uint64, error) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return 0, 0, fmt.Errorf("%q: want HEX:HEX", b)
	}
	x, err1 := strconv.ParseUint(string(b[:i]), 16, 64)
	y, err2 := strconv.ParseUint(string(b[i+1:]), 16, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q: want HEX:HEX", b)
	}
	return x, y, nil
}

// parseHexAddrPort parses "0100007F:1F90": the address as 32-bit words, each
// printed in host byte order, then the port in hex.
func parseHexAddrPort(b []byte, family inet.Family, order binary.ByteOrder) (netip.AddrPort, error) {
	i := bytes.IndexByte(b, ':')
	words := 1
	if family == inet.IPv6 {
		words = 4
	}
	if i != 8*words {
		return netip.AddrPort{}, fmt.Errorf("%q: want %d hex digits before the port", b, 8*words)
	}
	port, err := strconv.ParseUint(string(b[i+1:]), 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: bad port", b)
	}
	var raw [16]byte
	for w := 0; w < words; w++ {
		v, err := strconv.ParseUint(string(b[8*w:8*w+8]), 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%q: bad address", b)
		}
		order.PutUint32(raw[4*w:], uint32(v))
	}
	return netip.AddrPortFrom(addrFrom(raw[:4*words]), uint16(port)), nil
}
