// Package leakcheck fails a test binary that leaks goroutines or file
// descriptors. Use it from TestMain:
//
//	func TestMain(m *testing.M) { leakcheck.Main(m) }
package leakcheck

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Main runs the tests, then the cleanups (which may remove what TestMain
// made, since Main exits the process), then checks that no goroutine is left
// running and that the process holds no more descriptors than before.
func Main(m *testing.M, cleanups ...func()) {
	warmUp()
	before := OpenFDs()
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "leakcheck: goroutines leaked: %v\n", err)
			code = 1
		}
		if err := settle(before); err != nil {
			fmt.Fprintf(os.Stderr, "leakcheck: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// warmUp makes the Go runtime open the descriptors it keeps for the life of
// the process (the network poller's epoll and event descriptors, opened at
// the first pollable file or timer), so they are not counted as a leak.
func warmUp() {
	time.Sleep(time.Microsecond)
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
}

// settle waits briefly for descriptors closed asynchronously.
func settle(before int) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		after := OpenFDs()
		if after <= before {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("descriptors leaked: %d open before the tests, %d after", before, after)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// OpenFDs counts the process's open descriptors (Linux: /proc/self/fd);
// it returns 0 where that cannot be read.
func OpenFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents) - 1 // the directory read itself
}
