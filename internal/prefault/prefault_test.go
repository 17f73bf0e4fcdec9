package prefault

import (
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// TestSliceKeepsContents: advising a slice leaves what it holds and its
// length alone, for small and large slices and an empty one.
func TestSliceKeepsContents(t *testing.T) {
	for _, n := range []int{0, 10, 1 << 20} {
		s := make([]uint64, n/2, n)
		for i := range s {
			s[i] = uint64(i) * 7
		}
		Slice(s)
		if len(s) != n/2 || cap(s) != n {
			t.Fatalf("len %d cap %d, want %d %d", len(s), cap(s), n/2, n)
		}
		for i := range s {
			if s[i] != uint64(i)*7 {
				t.Fatalf("s[%d] = %d after Slice", i, s[i])
			}
		}
		s = s[:n]
		for i := n / 2; i < n; i++ {
			if s[i] != 0 {
				t.Fatalf("s[%d] = %d: fresh memory not zero", i, s[i])
			}
		}
	}
}

// TestMakeAndGrow: Make is make; Grow keeps the elements and length, makes
// room for n more, and at least doubles the capacity when it must grow,
// so that growing one element at a time copies rarely.
func TestMakeAndGrow(t *testing.T) {
	s := Make[int](3, 1<<16)
	if len(s) != 3 || cap(s) != 1<<16 || s[0]|s[1]|s[2] != 0 {
		t.Fatalf("Make: len %d cap %d %v", len(s), cap(s), s[:3])
	}
	s = []int{1, 2, 3}
	if g := Grow(s, 0); &g[0] != &s[0] {
		t.Error("Grow by 0 copied")
	}
	copies := 0
	for i := 4; i <= 100_000; i++ {
		if len(s) == cap(s) {
			g := Grow(s, 1)
			if len(g) != len(s) || cap(g) < 2*cap(s) || g[0] != 1 || g[len(g)-1] != i-1 {
				t.Fatalf("Grow(len %d cap %d, 1) = len %d cap %d", len(s), cap(s), len(g), cap(g))
			}
			s = g
			copies++
		}
		s = append(s, i)
	}
	if copies > 17 {
		t.Errorf("%d copies to grow to 100,000 one at a time", copies)
	}
	if g := Grow(s[:10], 1<<20); len(g) != 10 || cap(g) < 10+1<<20 || g[9] != 10 {
		t.Errorf("Grow(len 10, 1<<20) = len %d cap %d", len(g), cap(g))
	}
}
