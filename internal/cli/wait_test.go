package cli

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// Tests wait for what they need, never for a fixed time: output through
// syncBuffer.await, which wakes on each write; kernel and process state no
// event reports (a listener appearing, a socket's state in the socket
// table, a process's end) through waitFor, which checks with a short
// backoff. A time.Sleep left in a test is the behaviour under test (an
// idle timeout, a pause longer than an old linger) and says so.

// waitFor waits up to 10 s until ok holds and fails t naming what.
func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	waitWithin(t, 10*time.Second, what, ok)
}

// waitWithin waits up to d until ok holds and fails t naming what.
func waitWithin(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	if !poll(d, ok) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// poll checks ok until it holds (true) or d has passed (false), backing
// off from 1 ms to 50 ms between checks.
func poll(d time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(d)
	pause := time.Millisecond
	for !ok() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
	return true
}

// syncBuffer is a buffer safe for one writer and many readers, that wakes
// those waiting for its contents on each write.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed at the next write; nil when nobody waits
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// snapshot returns the contents and a channel closed at the next write.
func (s *syncBuffer) snapshot() (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.b.String(), s.changed
}

// await waits up to d until cond holds for the contents. It returns false
// when d passes or done (the writer's end, when not nil) is closed first
// and cond still does not hold.
func (s *syncBuffer) await(d time.Duration, done <-chan struct{}, cond func(string) bool) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		got, changed := s.snapshot()
		if cond(got) {
			return true
		}
		select {
		case <-changed:
		case <-done:
			return cond(s.String())
		case <-timer.C:
			return false
		}
	}
}
