package lab

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFreshAddressesUsable adds many IPv6 addresses (their local routes
// come from a work queue after the address exists) and connects to a
// server on each at once: every connect must be the kernel's real answer
// (ok), never ENETUNREACH from an address whose route is not there yet.
func TestFreshAddressesUsable(t *testing.T) {
	requireRoot(t)
	var b strings.Builder
	b.WriteString("[fresh]\n")
	for i := 1; i <= 24; i++ {
		fmt.Fprintf(&b, "S%d server tcp6 [fd00::%x]:80\nC%d socket tcp6\nC%d connect [fd00::%x]:80 => ok\n", i, i, i, i, i)
	}
	scs, err := Parse("fresh.lab", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	var r Runner
	for round := 0; round < 3; round++ {
		res, err := r.Run(context.Background(), scs[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range res.Results {
			if !x.OK {
				t.Errorf("round %d, line %d %s %s: kernel %s, model %s", round, x.Line, x.Socket, x.Op, x.Kernel, x.Model)
			}
		}
	}
}

// TestCloseWatchFailsLoudly closes a connection whose peer was never
// accepted: it can reach FIN_WAIT2 but never TIME_WAIT, so a watch for
// TIME_WAIT must fail with the state it saw instead of answering quietly,
// and a watch for FIN_WAIT2 must succeed.
func TestCloseWatchFailsLoudly(t *testing.T) {
	requireRoot(t) // the socket table's inet_diag needs no root, but keep to the lab's rule
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // never accepts: its children stay in the queue
	dial := func() *helperSock {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := connectTo(fd, ln.Addr().String(), time.Second); err != nil {
			unix.Close(fd)
			t.Fatal(err)
		}
		return &helperSock{fd: fd, proto: TCP4}
	}
	start := time.Now()
	state, _, err := closeAndWatch(dial(), "TIME_WAIT", 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not reach TIME_WAIT") || !strings.Contains(err.Error(), "FIN_WAIT2") {
		t.Errorf("watch for TIME_WAIT: state %q, error %v; want an error naming FIN_WAIT2", state, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("watch took %v, bound 300ms", d)
	}
	if state, _, err := closeAndWatch(dial(), "FIN_WAIT2", 2*time.Second); err != nil || state != "FIN_WAIT2" {
		t.Errorf("watch for FIN_WAIT2: state %q, error %v", state, err)
	}
}
