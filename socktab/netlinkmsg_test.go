package socktab

import (
	"errors"
	"slices"
	"syscall"
	"testing"

	"github.com/tuple-net/tuple/inet"
)

// nlmsg frames payload as one netlink message.
func nlmsg(typ uint16, seq uint32, payload []byte) []byte {
	return nlmsgFlags(typ, 0x2 /* NLM_F_MULTI */, seq, payload)
}

func nlmsgFlags(typ, flags uint16, seq uint32, payload []byte) []byte {
	n := nlmsgHdrLen + len(payload)
	b := make([]byte, (n+3)&^3)
	hostOrder.PutUint32(b, uint32(n))
	hostOrder.PutUint16(b[4:], typ)
	hostOrder.PutUint16(b[6:], flags)
	hostOrder.PutUint32(b[8:], seq)
	copy(b[nlmsgHdrLen:], payload)
	return b
}

// doneMsg is an NLMSG_DONE whose payload is errno (0 or negative).
func doneMsg(seq uint32, errno int32) []byte {
	p := make([]byte, 4)
	hostOrder.PutUint32(p, uint32(errno))
	return nlmsg(nlmsgDone, seq, p)
}

// TestDumpReader: a dump is read to NLMSG_DONE; an errno inside NLMSG_DONE
// (the kernel failed part way) and NLM_F_DUMP_INTR (the table changed under
// the dump) are errors, never a short table that looks complete.
func TestDumpReader(t *testing.T) {
	msg := diagMsgFixture(afINET, 10, 0, 80, 0, []byte{127, 0, 0, 1}, []byte{0, 0, 0, 0}, 0, 0, 0, 0, 0, 0, 0)
	read := func(dgrams ...[]byte) (dumpReader[Socket], error) {
		d := dumpReader[Socket]{seq: 7, proto: inet.TCP, parse: parseInetDiagMsg}
		for _, b := range dgrams {
			if err := d.datagram(b); err != nil {
				return d, err
			}
		}
		return d, d.err()
	}
	d, err := read(nlmsg(sockDiagByFamily, 7, msg), append(nlmsg(sockDiagByFamily, 7, msg), doneMsg(7, 0)...))
	if err != nil || !d.done || len(d.socks) != 2 || d.socks[0].Local.Port() != 80 {
		t.Errorf("complete dump: done %v, %d sockets, err %v", d.done, len(d.socks), err)
	}
	// Datagrams received into one buffer, one after the other, read as one.
	joined := slices.Concat(nlmsg(sockDiagByFamily, 7, msg), nlmsg(sockDiagByFamily, 7, msg), nlmsg(sockDiagByFamily, 7, msg), doneMsg(7, 0))
	if d, err := read(joined); err != nil || !d.done || len(d.socks) != 3 {
		t.Errorf("joined datagrams: done %v, %d sockets, err %v", d.done, len(d.socks), err)
	}
	if _, err := read(nlmsg(sockDiagByFamily, 7, msg), doneMsg(7, -int32(syscall.ENOMEM))); !errors.Is(err, syscall.ENOMEM) {
		t.Errorf("NLMSG_DONE carrying ENOMEM: err %v, want ENOMEM", err)
	}
	d, err = read(nlmsgFlags(sockDiagByFamily, 0x2|nlmFDumpIntr, 7, msg), doneMsg(7, 0))
	if !errors.Is(err, errDumpInterrupted) || !d.done {
		t.Errorf("NLM_F_DUMP_INTR: done %v, err %v, want errDumpInterrupted after reading to the end", d.done, err)
	}
	if _, err := read(nlmsgFlags(sockDiagByFamily, 0x2|nlmFDumpIntr, 6, msg), doneMsg(7, 0)); err != nil {
		t.Errorf("a stale reply's NLM_F_DUMP_INTR counted for this dump: %v", err)
	}
}

func TestWalkNetlink(t *testing.T) {
	var dgram []byte
	dgram = append(dgram, nlmsg(sockDiagByFamily, 7, []byte{1, 2, 3})...)
	dgram = append(dgram, nlmsg(sockDiagByFamily, 6, []byte{9})...) // stale: skipped
	dgram = append(dgram, nlmsg(nlmsgDone, 7, []byte{0, 0, 0, 0})...)
	var types []uint16
	var lens []int
	err := walkNetlink(dgram, 7, func(typ, _ uint16, p []byte) error {
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
	if err := walkNetlink(nlmsg(nlmsgError, 1, e), 1, func(_, _ uint16, _ []byte) error { return nil }); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("error message: %v, want EINVAL", err)
	}
	bad := nlmsg(sockDiagByFamily, 1, nil)
	hostOrder.PutUint32(bad, 100)
	if err := walkNetlink(bad, 1, func(_, _ uint16, _ []byte) error { return nil }); err == nil {
		t.Error("length beyond the datagram accepted")
	}
}

func FuzzWalkNetlink(f *testing.F) {
	f.Add(nlmsg(sockDiagByFamily, 1, diagMsgFixture(afINET, 1, 0, 1, 2, []byte{1, 2, 3, 4}, []byte{5, 6, 7, 8}, 0, 0, 0, 0, 0, 0, 0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := dumpReader[Socket]{seq: 1, proto: inet.TCP, parse: parseInetDiagMsg}
		if err := d.datagram(b); err == nil && len(d.socks) > 0 && d.socks[0].Proto != inet.TCP {
			t.Fatalf("decoded a socket of protocol %v", d.socks[0].Proto)
		}
	})
}

// TestEndsDump: the receiver stops at the dump's own end or error message,
// not at another sequence's, and at a message it cannot walk past.
func TestEndsDump(t *testing.T) {
	msg := diagMsgFixture(afINET, 10, 0, 80, 0, []byte{127, 0, 0, 1}, []byte{0, 0, 0, 0}, 0, 0, 0, 0, 0, 0, 0)
	for _, c := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"sockets only", append(nlmsg(sockDiagByFamily, 7, msg), nlmsg(sockDiagByFamily, 7, msg)...), false},
		{"done", append(nlmsg(sockDiagByFamily, 7, msg), doneMsg(7, 0)...), true},
		{"error", nlmsg(nlmsgError, 7, []byte{0xea, 0xff, 0xff, 0xff}), true},
		{"another dump's done", doneMsg(6, 0), false},
		{"bad length", nlmsg(sockDiagByFamily, 7, msg)[:20], true},
		{"empty", nil, false},
	} {
		if got := endsDump(c.b, 7); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
