package socktab

import (
	"errors"
	"syscall"
	"testing"
)

// nlmsg frames payload as one netlink message.
func nlmsg(typ uint16, seq uint32, payload []byte) []byte {
	n := nlmsgHdrLen + len(payload)
	b := make([]byte, (n+3)&^3)
	hostOrder.PutUint32(b, uint32(n))
	hostOrder.PutUint16(b[4:], typ)
	hostOrder.PutUint32(b[8:], seq)
	copy(b[nlmsgHdrLen:], payload)
	return b
}

func TestWalkNetlink(t *testing.T) {
	var dgram []byte
	dgram = append(dgram, nlmsg(sockDiagByFamily, 7, []byte{1, 2, 3})...)
	dgram = append(dgram, nlmsg(sockDiagByFamily, 6, []byte{9})...) // stale: skipped
	dgram = append(dgram, nlmsg(nlmsgDone, 7, []byte{0, 0, 0, 0})...)
	var types []uint16
	var lens []int
	err := walkNetlink(dgram, 7, func(typ uint16, p []byte) error {
		types = append(types, typ)
		lens = append(lens, len(p))
		return nil
	})
	if err != nil || len(types) != 2 || types[0] != sockDiagByFamily || lens[0] != 3 || types[1] != nlmsgDone {
		t.Errorf("types %v lens %v err %v", types, lens, err)
	}

	e := make([]byte, 20)
	errno := -int32(syscall.EINVAL)
	hostOrder.PutUint32(e, uint32(errno))
	if err := walkNetlink(nlmsg(nlmsgError, 1, e), 1, func(uint16, []byte) error { return nil }); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("error message: %v, want EINVAL", err)
	}
	bad := nlmsg(sockDiagByFamily, 1, nil)
	hostOrder.PutUint32(bad, 100)
	if err := walkNetlink(bad, 1, func(uint16, []byte) error { return nil }); err == nil {
		t.Error("length beyond the datagram accepted")
	}
}

func FuzzWalkNetlink(f *testing.F) {
	f.Add(nlmsg(sockDiagByFamily, 1, diagMsgFixture(afINET, 1, 0, 1, 2, []byte{1, 2, 3, 4}, []byte{5, 6, 7, 8}, 0, 0, 0, 0, 0, 0, 0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		walkNetlink(b, 1, func(typ uint16, p []byte) error {
			var s Socket
			parseInetDiagMsg(p, TCP, &s)
			return nil
		})
	})
}
