package lab

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// ifAddrMsg builds an RTM_NEWADDR body as the kernel sends it.
func ifAddrMsg(family, bits byte, index uint32, attrs map[uint16][]byte) []byte {
	b := make([]byte, 8)
	b[0], b[1] = family, bits
	binary.NativeEndian.PutUint32(b[4:], index)
	for _, typ := range []uint16{ifaAddress, ifaLocal, 8} {
		data, ok := attrs[typ]
		if !ok {
			continue
		}
		a := make([]byte, 4, 4+len(data)+3)
		binary.NativeEndian.PutUint16(a[0:], uint16(4+len(data)))
		binary.NativeEndian.PutUint16(a[2:], typ)
		a = append(a, data...)
		for len(a)%4 != 0 {
			a = append(a, 0)
		}
		b = append(b, a...)
	}
	return b
}

func TestParseIfAddr(t *testing.T) {
	lo := ifAddrMsg(2, 8, 1, map[uint16][]byte{ifaAddress: {127, 0, 0, 1}, ifaLocal: {127, 0, 0, 1}, 8: []byte("lo\x00")})
	p, idx, err := parseIfAddr(lo)
	if err != nil || idx != 1 || p != netip.MustParsePrefix("127.0.0.1/8") {
		t.Errorf("lo: %v %d %v", p, idx, err)
	}
	v6 := netip.MustParseAddr("fd00::1").As16()
	p, idx, err = parseIfAddr(ifAddrMsg(10, 128, 3, map[uint16][]byte{ifaAddress: v6[:]}))
	if err != nil || idx != 3 || p != netip.MustParsePrefix("fd00::1/128") {
		t.Errorf("v6: %v %d %v", p, idx, err)
	}
	for name, b := range map[string][]byte{
		"short":           {2, 8, 0},
		"no address":      ifAddrMsg(2, 8, 1, map[uint16][]byte{8: []byte("lo\x00")}),
		"bad length":      append(ifAddrMsg(2, 8, 1, nil), 0xff, 0, 1, 0),
		"family clash":    ifAddrMsg(10, 8, 1, map[uint16][]byte{ifaLocal: {127, 0, 0, 1}}),
		"prefix too long": ifAddrMsg(2, 33, 1, map[uint16][]byte{ifaLocal: {127, 0, 0, 1}}),
		"odd address":     ifAddrMsg(2, 8, 1, map[uint16][]byte{ifaLocal: {127, 0, 1}}),
	} {
		if _, _, err := parseIfAddr(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzParseIfAddr(f *testing.F) {
	f.Add(ifAddrMsg(2, 8, 1, map[uint16][]byte{ifaAddress: {127, 0, 0, 1}, ifaLocal: {127, 0, 0, 1}}))
	v6 := netip.MustParseAddr("::1").As16()
	f.Add(ifAddrMsg(10, 128, 1, map[uint16][]byte{ifaAddress: v6[:]}))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, _, err := parseIfAddr(b)
		if err == nil && (!p.IsValid() || p.Bits() > p.Addr().BitLen()) {
			t.Fatalf("invalid prefix %v accepted", p)
		}
	})
}
