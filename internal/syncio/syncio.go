// Package syncio holds the writers that goroutines share: a process's
// standard error copied by exec while a test reads it, or the connections
// of one listener writing to one terminal.
package syncio

import (
	"bytes"
	"io"
	"sync"
)

// Writer serialises writes to W so that each chunk arrives whole.
type Writer struct {
	mu sync.Mutex
	W  io.Writer
}

func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.W.Write(p)
}

// Buffer is a bytes.Buffer that one goroutine may write while another
// reads. With Max above zero it keeps only the first Max bytes (and
// more, up to the write that crossed Max), and drops the rest while still
// reporting them written, so a chatty process cannot fill memory.
type Buffer struct {
	Max int

	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Max > 0 && b.b.Len() > b.Max {
		return len(p), nil
	}
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
