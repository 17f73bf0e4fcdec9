package cli

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestBroadcastLeavesOutAClientThatDoesNotRead: a client that reads
// nothing is left out once it has kept stdin waiting broadcastLag, with a
// line on stderr; a client that reads gets every read of stdin, in order,
// however slowly it takes them.
func TestBroadcastLeavesOutAClientThatDoesNotRead(t *testing.T) {
	defer func(n int, lag time.Duration) { broadcastQueue, broadcastLag = n, lag }(broadcastQueue, broadcastLag)
	broadcastQueue, broadcastLag = 2, 200*time.Millisecond
	var errOut syncBuffer
	b := newBroadcast(true, &errOut)
	slowServer, slowClient := net.Pipe() // nobody reads slowClient
	fastServer, fastClient := net.Pipe()
	defer slowClient.Close()
	defer fastClient.Close()
	removeSlow, _ := b.add(slowServer)
	removeFast, fastSent := b.add(fastServer)
	var want strings.Builder
	for i := range 10 {
		fmt.Fprintf(&want, "chunk %d\n", i)
	}
	// Read exactly what standard input will carry: removing the client
	// before its writer has sent its queue would rightly drop the rest.
	got := make(chan string)
	go func() {
		all := make([]byte, want.Len())
		n, _ := io.ReadFull(fastClient, all)
		got <- string(all[:n])
	}()

	in, stdin := io.Pipe()
	done := make(chan struct{})
	go func() { b.readFrom(in); close(done) }()
	for i := range 10 {
		fmt.Fprintf(stdin, "chunk %d\n", i) // one read each
	}
	stdin.Close()
	<-done

	var s string
	select {
	case s = <-got:
	case <-time.After(10 * time.Second): // a chunk went missing
		fastServer.Close()
		s = <-got
	}
	if s != want.String() {
		t.Errorf("the reading client got %q, want %q", s, want.String())
	}
	removeFast()
	if n := fastSent(); n != int64(want.Len()) {
		t.Errorf("sent %d bytes to the reading client, want %d", n, want.Len())
	}
	fastServer.Close()
	if !strings.Contains(errOut.String(), "kept standard input waiting 200ms: left out of the broadcast") {
		t.Errorf("stderr %q: want the client left out named", errOut.String())
	}
	slowServer.Close() // ends the writer blocked on it
	removeSlow()
}
