package sockfacts

import (
	"encoding/binary"
	"testing"
)

// testBTF builds raw BTF: int (id 1, 4 bytes), struct "s" (id 2, 16
// bytes) with a: int at 0, an anonymous union (id 3) holding b: int at
// bit 32, and a bitfield c of 3 bits at bit 96; typedef "t" of s (id 4);
// func "f" (id 5).
func testBTF() []byte {
	bo := binary.NativeEndian
	strs := []byte("\x00int\x00s\x00a\x00b\x00c\x00t\x00f\x00")
	name := map[string]uint32{"int": 1, "s": 5, "a": 7, "b": 9, "c": 11, "t": 13, "f": 15}
	var types []byte
	u32 := func(v ...uint32) {
		for _, x := range v {
			types = bo.AppendUint32(types, x)
		}
	}
	u32(name["int"], btfInt<<24, 4, 32)                    // 1: int
	u32(name["s"], 1<<31|btfStruct<<24|3, 16)              // 2: struct s, kind_flag (bitfield offsets)
	u32(name["a"], 1, 0, 0, 3, 32, name["c"], 1, 3<<24|96) //    a, anonymous union, c:3
	u32(0, btfUnion<<24|1, 4, name["b"], 1, 0)             // 3: union { b }
	u32(name["t"], btfTypedef<<24, 2)                      // 4: typedef s t
	u32(name["f"], btfFunc<<24, 0)                         // 5: func f
	h := make([]byte, 24)
	bo.PutUint16(h, btfMagic)
	h[2] = 1
	bo.PutUint32(h[4:], 24)
	bo.PutUint32(h[8:], 0)
	bo.PutUint32(h[12:], uint32(len(types)))
	bo.PutUint32(h[16:], uint32(len(types)))
	bo.PutUint32(h[20:], uint32(len(strs)))
	return append(append(h, types...), strs...)
}

func TestParseBTF(t *testing.T) {
	x, err := parseBTF(testBTF())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want field
	}{
		{"a", field{off: 0, size: 4}},
		{"b", field{off: 4, size: 4}},
		{"c", field{off: 12, size: 1, bit: 0, nbits: 3, isBitfield: true}},
	} {
		if got, err := x.field("s", c.name, 0); err != nil || got != c.want {
			t.Errorf("s.%s: %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
	if _, err := x.field("s", "a", 8); err == nil {
		t.Error("s.a accepted as 8 bytes")
	}
	if id, err := x.find(btfFunc, "f"); err != nil || id != 5 {
		t.Errorf("func f: id %d, %v; want 5", id, err)
	}
	if n, err := x.sizeof(4); err != nil || n != 16 {
		t.Errorf("sizeof typedef t: %d, %v; want 16", n, err)
	}
	if _, err := x.find(btfStruct, "t"); err == nil {
		t.Error("typedef t found as a struct")
	}
	// One scan for many names answers find as its own scans do.
	y, err := parseBTF(testBTF())
	if err != nil {
		t.Fatal(err)
	}
	y.prefetch(btfStruct, "s", "t", "nope")
	y.prefetch(btfFunc, "f", "s")
	for _, c := range []struct {
		kind uint32
		name string
		want uint32
	}{{btfStruct, "s", 2}, {btfStruct, "t", 0}, {btfStruct, "nope", 0}, {btfFunc, "f", 5}, {btfFunc, "s", 0}} {
		id, err := y.find(c.kind, c.name)
		if id != c.want || (err == nil) != (c.want != 0) {
			t.Errorf("prefetched %s (kind %d): id %d, %v; want %d", c.name, c.kind, id, err, c.want)
		}
	}
	b := testBTF()
	for _, bad := range [][]byte{b[:20], b[:len(b)-1], append([]byte{0, 0}, b[2:]...)} {
		if _, err := parseBTF(bad); err == nil {
			t.Errorf("malformed BTF of %d bytes accepted", len(bad))
		}
	}
}

// FuzzParseBTF: no input makes the reader panic or loop.
func FuzzParseBTF(f *testing.F) {
	f.Add(testBTF(), "s", "c")
	f.Fuzz(func(t *testing.T, b []byte, st, member string) {
		x, err := parseBTF(b)
		if err != nil {
			return
		}
		_, _ = x.field(st, member, 0)
		_, _ = x.find(btfFunc, member)
		for id := range uint32(len(x.off)) + 2 {
			_, _ = x.sizeof(id)
		}
	})
}

// TestBTFCycles: types that refer to each other in a loop (arrays of each
// other, a typedef of itself) are errors, not endless recursion.
func TestBTFCycles(t *testing.T) {
	b := testBTF()
	bo := binary.NativeEndian
	x, err := parseBTF(b)
	if err != nil {
		t.Fatal(err)
	}
	// Turn "typedef t" (id 4) into a typedef of itself.
	bo.PutUint32(x.types[x.off[3]+8:], 4)
	if _, err := x.sizeof(4); err == nil {
		t.Error("typedef of itself has a size")
	}
	// Two arrays of each other.
	types := append([]byte(nil), x.types...)
	for _, a := range [][2]uint32{{7, 6}, {6, 7}} { // ids 6 and 7
		types = bo.AppendUint32(types, 0)
		types = bo.AppendUint32(types, btfArray<<24)
		types = bo.AppendUint32(types, 0)
		types = bo.AppendUint32(types, a[0])
		types = bo.AppendUint32(types, 1)
		types = bo.AppendUint32(types, 2)
	}
	y := &btfIndex{types: types, strs: x.strs, off: append(append([]uint32(nil), x.off...), uint32(len(x.types)), uint32(len(x.types)+24))}
	if _, err := y.sizeof(6); err == nil {
		t.Error("arrays of each other have a size")
	}
}
