package sockfacts

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// note is one ELF note in host byte order.
func note(name string, typ uint32, desc []byte) []byte {
	bo := binary.NativeEndian
	b := bo.AppendUint32(nil, uint32(len(name)))
	b = bo.AppendUint32(b, uint32(len(desc)))
	b = bo.AppendUint32(b, typ)
	b = append(b, name...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b = append(b, desc...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// TestParseBuildID: the build ID is found past other notes (the kernel's
// "Linux" notes come first on some builds), only in a note named GNU of
// type 3; cut notes give nothing.
func TestParseBuildID(t *testing.T) {
	id := []byte{0x85, 0xc7, 0xe4, 0xe2, 0xed, 0x76, 0xf4, 0x41, 0x7e, 0x8a, 0xaa, 0xd7, 0xc6, 0xb0, 0x40, 0xd2, 0xbb, 0x89, 0x7a, 0x26}
	notes := append(append(note("Linux\x00", 6, []byte{1, 2, 3}), note("Xen\x00", 3, []byte{9, 9})...), note("GNU\x00", 3, id)...)
	got, ok := parseBuildID(notes)
	if !ok || !bytes.Equal(got, id) {
		t.Fatalf("parseBuildID = %x, %v; want %x", got, ok, id)
	}
	for _, bad := range [][]byte{nil, notes[:len(notes)-4], note("GNU\x00", 4, id), note("GNU\x00", 3, nil)} {
		if got, ok := parseBuildID(bad); ok {
			t.Errorf("parseBuildID(%x) = %x, want none", bad, got)
		}
	}
}

func FuzzParseBuildID(f *testing.F) {
	f.Add(note("GNU\x00", 3, []byte{1, 2, 3, 4, 5}))
	f.Add(append(note("Linux\x00", 6, []byte{1}), note("GNU\x00", 3, []byte{7})...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if id, ok := parseBuildID(b); ok && (len(id) == 0 || len(id) > len(b)) {
			t.Fatalf("build ID of %d bytes from %d", len(id), len(b))
		}
	})
}
