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
