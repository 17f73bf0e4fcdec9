package lab

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Route attribute types of an address message (linux/if_addr.h); kept here
// so the parser builds on every platform.
const (
	ifaAddress = 1
	ifaLocal   = 2
)

// parseIfAddr reads one RTM_NEWADDR message body (struct ifaddrmsg, then
// attributes) and returns the address with its prefix length and the
// interface index. IFA_LOCAL wins over IFA_ADDRESS (they differ only on
// point-to-point links).
func parseIfAddr(b []byte) (netip.Prefix, uint32, error) {
	if len(b) < 8 {
		return netip.Prefix{}, 0, errors.New("short ifaddrmsg")
	}
	family, bits, index := b[0], int(b[1]), binary.NativeEndian.Uint32(b[4:8])
	var addr, local netip.Addr
	for rest := b[8:]; len(rest) >= 4; {
		l := int(binary.NativeEndian.Uint16(rest[0:2]))
		typ := binary.NativeEndian.Uint16(rest[2:4]) & 0x3fff
		if l < 4 || l > len(rest) {
			return netip.Prefix{}, 0, errors.New("bad attribute length")
		}
		data := rest[4:l]
		if typ == ifaAddress || typ == ifaLocal {
			a, ok := netip.AddrFromSlice(data)
			if !ok {
				return netip.Prefix{}, 0, errors.New("bad address attribute")
			}
			if typ == ifaLocal {
				local = a
			} else {
				addr = a
			}
		}
		next := (l + 3) &^ 3 // attributes are 4-byte aligned
		if next > len(rest) {
			break
		}
		rest = rest[next:]
	}
	if local.IsValid() {
		addr = local
	}
	if !addr.IsValid() {
		return netip.Prefix{}, 0, errors.New("address message without an address")
	}
	if (family == 2) != addr.Is4() || bits > addr.BitLen() {
		return netip.Prefix{}, 0, errors.New("address does not match its family or prefix length")
	}
	return netip.PrefixFrom(addr, bits), index, nil
}
