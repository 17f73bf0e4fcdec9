package lab

import (
	"bufio"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// procEntry is one row of /proc/net/tcp or /proc/net/tcp6.
type procEntry struct {
	Local, Remote netip.AddrPort
	State         int
}

// parseProcNetTCP parses the kernel's /proc/net/tcp{,6} text. It is used to
// see what became of a socket after close (TIME_WAIT or gone), which no
// descriptor can tell any more. Rows it cannot read are an error.
func parseProcNetTCP(r io.Reader) ([]procEntry, error) {
	var out []procEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), 4096)
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			return nil, errors.New("short row in /proc/net/tcp")
		}
		l, err1 := parseHexAddrPort(f[1])
		rm, err2 := parseHexAddrPort(f[2])
		st, err3 := strconv.ParseUint(f[3], 16, 8)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, err
		}
		out = append(out, procEntry{Local: l, Remote: rm, State: int(st)})
	}
	return out, sc.Err()
}

// parseHexAddrPort reads "0100007F:1F90": the address as the kernel's
// in-memory 32-bit words printed in host (little-endian) order, then the port.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || (len(a) != 8 && len(a) != 32) {
		return netip.AddrPort{}, errors.New("bad address " + strconv.Quote(s))
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}, errors.New("bad address " + strconv.Quote(s))
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, errors.New("bad port " + strconv.Quote(s))
	}
	for i := 0; i+4 <= len(raw); i += 4 { // each word is little-endian
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
