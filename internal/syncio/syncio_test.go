package syncio

import (
	"strings"
	"sync"
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// Concurrent writers each land whole: no line is split by another's.
func TestWriterKeepsChunksWhole(t *testing.T) {
	var sb strings.Builder
	w := &Writer{W: &sb}
	line := strings.Repeat("x", 100) + "\n"
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				w.Write([]byte(line))
			}
		}()
	}
	wg.Wait()
	got := sb.String()
	if want := strings.Repeat(line, 400); got != want {
		t.Errorf("got %d bytes with %d lines, want %d whole lines", len(got), strings.Count(got, "\n"), 400)
	}
}

// A Buffer with Max stops keeping once past it, but never fails a write.
func TestBufferMax(t *testing.T) {
	b := &Buffer{Max: 4}
	for _, s := range []string{"abc", "de", "fgh"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", s, n, err, len(s))
		}
	}
	if got := b.String(); got != "abcde" {
		t.Errorf("String() = %q, want %q (kept up to the write that crossed Max)", got, "abcde")
	}
	var all Buffer
	all.Write([]byte("abc"))
	all.Write([]byte("de"))
	if got := all.String(); got != "abcde" {
		t.Errorf("without Max: String() = %q, want %q", got, "abcde")
	}
}
