package cli

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/internal/testenv"
)

// bulkSize is what each direction carries in the interoperability tests.
const bulkSize = 100 << 20

func needPeers(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"socat", "nc", "ss"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "needs "+tool+" (.ci/run installs socat, netcat-openbsd and iproute2)")
		}
	}
	if out, _ := exec.Command("nc", "-h").CombinedOutput(); !bytes.Contains(bytes.ToLower(out), []byte("openbsd")) {
		testenv.Missing(t, "needs OpenBSD netcat (Debian's netcat-openbsd)")
	}
}

type streamSum struct {
	n   int64
	sum [sha256.Size]byte
	err error
}

// feed writes bulkSize random bytes (ChaCha8 with a random seed) to w and
// closes w once release is closed: a side ends its input only after it has
// received everything, so no peer's exit rule can cut a transfer short.
func feed(w io.WriteCloser, release <-chan struct{}) <-chan streamSum {
	res := make(chan streamSum, 1)
	go func() {
		var seed [32]byte
		rand.Read(seed[:])
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(mrand.NewChaCha8(seed), bulkSize))
		<-release
		w.Close()
		res <- streamSum{n: n, sum: [32]byte(h.Sum(nil)), err: err}
	}()
	return res
}

// drain hashes r until EOF; full is closed once bulkSize bytes arrived.
func drain(r io.Reader) (sum <-chan streamSum, full <-chan struct{}) {
	res := make(chan streamSum, 1)
	got := make(chan struct{})
	go func() {
		h := sha256.New()
		buf := make([]byte, 256<<10)
		var n int64
		var err error
		for {
			var k int
			k, err = r.Read(buf)
			h.Write(buf[:k])
			if n < bulkSize && n+int64(k) >= bulkSize {
				close(got)
			}
			n += int64(k)
			if err != nil {
				break
			}
		}
		if n < bulkSize {
			close(got)
		}
		if err == io.EOF {
			err = nil
		}
		res <- streamSum{n: n, sum: [32]byte(h.Sum(nil)), err: err}
	}()
	return res, got
}

// bulkBothWays sends bulkSize bytes from a to b and from b to a at once
// and checks both arrive intact and both programs exit 0.
func bulkBothWays(t *testing.T, a, b *proc) {
	t.Helper()
	aGot, aFull := drain(a.outR)
	bGot, bFull := drain(b.outR)
	aSent := feed(a.stdin, aFull)
	bSent := feed(b.stdin, bFull)
	timeout := time.After(60 * time.Second)
	var results [4]streamSum
	for i, ch := range []<-chan streamSum{aSent, bSent, aGot, bGot} {
		select {
		case results[i] = <-ch:
		case <-timeout:
			t.Fatalf("transfer stalled; %s: %s; %s: %s", a.name, a.stderr.String(), b.name, b.stderr.String())
		}
		if results[i].err != nil {
			t.Fatalf("stream %d: %v", i, results[i].err)
		}
	}
	check := func(dir string, sent, got streamSum) {
		if sent.n != bulkSize || got.n != sent.n || sent.sum != got.sum {
			t.Errorf("%s: sent %d bytes sha256 %x, received %d bytes sha256 %x", dir, sent.n, sent.sum[:8], got.n, got.sum[:8])
		}
	}
	check(a.name+" -> "+b.name, results[0], results[3])
	check(b.name+" -> "+a.name, results[1], results[2])
	for _, p := range []*proc{a, b} {
		if code := p.wait(20 * time.Second); code != 0 {
			t.Errorf("%s exited %d: %s", p.name, code, p.stderr.String())
		}
	}
}

func interopNS(t *testing.T) *netnstest.NS {
	t.Helper()
	needTuple(t)
	needPeers(t)
	return netnstest.New(t, "10.0.0.1/32")
}

func TestInteropBulk(t *testing.T) {
	t.Run("tuple connect to socat", func(t *testing.T) {
		ns := interopNS(t)
		server := startIn(t, ns, true, "socat", "-b65536", "-t30", "TCP-LISTEN:9000,bind=10.0.0.1,reuseaddr", "STDIO").run(nil)
		waitListening(t, ns, "9000")
		client := startIn(t, ns, true, "tuple", "connect", "10.0.0.1", "9000").run(nil)
		bulkBothWays(t, client, server)
	})
	t.Run("tuple connect to nc", func(t *testing.T) {
		ns := interopNS(t)
		server := startIn(t, ns, true, "nc", "-l", "10.0.0.1", "9000").run(nil)
		waitListening(t, ns, "9000")
		client := startIn(t, ns, true, "tuple", "connect", "10.0.0.1", "9000").run(nil)
		bulkBothWays(t, client, server)
	})
	t.Run("socat to tuple listen", func(t *testing.T) {
		ns := interopNS(t)
		server := startIn(t, ns, true, "tuple", "listen", "-v", "10.0.0.1", "9000").run(nil)
		server.waitStderr("listening on")
		client := startIn(t, ns, true, "socat", "-b65536", "-t30", "STDIO", "TCP:10.0.0.1:9000").run(nil)
		bulkBothWays(t, client, server)
	})
	t.Run("nc to tuple listen", func(t *testing.T) {
		ns := interopNS(t)
		server := startIn(t, ns, true, "tuple", "listen", "-v", "10.0.0.1", "9000").run(nil)
		server.waitStderr("listening on")
		client := startIn(t, ns, true, "nc", "-N", "10.0.0.1", "9000").run(nil)
		bulkBothWays(t, client, server)
	})
}

// TestInteropHalfClose checks both directions of a half-close with peers
// nobody here wrote: tuple shuts its write side down at stdin EOF and still
// reads the reply; a peer that shuts its write side down still gets tuple's
// (its -e command's) reply.
func TestInteropHalfClose(t *testing.T) {
	const msg = "request ending in a half-close\n"
	wantReply := strconv.Itoa(len(msg))
	finish := func(t *testing.T, client *proc, others ...*proc) {
		t.Helper()
		client.stdin.Write([]byte(msg))
		client.stdin.Close()
		if code := client.wait(10 * time.Second); code != 0 {
			t.Fatalf("%s exited %d: %s", client.name, code, client.stderr.String())
		}
		if got := strings.TrimSpace(client.stdout.String()); got != wantReply {
			t.Errorf("%s received %q, want %q (the server's byte count, sent after our EOF)", client.name, got, wantReply)
		}
		for _, p := range others {
			if code := p.wait(10 * time.Second); code != 0 {
				t.Errorf("%s exited %d: %s", p.name, code, p.stderr.String())
			}
		}
	}
	t.Run("tuple connect to socat", func(t *testing.T) {
		ns := interopNS(t)
		// socat ends a session -t seconds (0.5 by default) after the first
		// EOF, here tuple's half-close: a wc slower than that to start
		// and answer (on a loaded machine) had its reply dropped. With
		// -t30 socat still ends as soon as wc's output ends.
		server := startIn(t, ns, false, "socat", "-t30", "TCP-LISTEN:9000,bind=10.0.0.1,reuseaddr", "SYSTEM:wc -c").run(nil)
		waitListening(t, ns, "9000")
		finish(t, startIn(t, ns, false, "tuple", "connect", "10.0.0.1", "9000").run(nil), server)
	})
	t.Run("nc to tuple listen -e", func(t *testing.T) {
		ns := interopNS(t)
		server := startIn(t, ns, false, "tuple", "listen", "-v", "-e", "wc -c", "10.0.0.1", "9000").run(nil)
		server.waitStderr("listening on")
		finish(t, startIn(t, ns, false, "nc", "-N", "10.0.0.1", "9000").run(nil), server)
	})
	t.Run("socat to tuple listen -e", func(t *testing.T) {
		ns := interopNS(t)
		server := startIn(t, ns, false, "tuple", "listen", "-v", "-e", "wc -c", "10.0.0.1", "9000").run(nil)
		server.waitStderr("listening on")
		// -t30, as above: socat's stdin ends first, and the reply comes
		// after tuple's -e command has started and answered.
		finish(t, startIn(t, ns, false, "socat", "-t30", "STDIO", "TCP:10.0.0.1:9000").run(nil), server)
	})
	// nc's client rule: the peer closing first does not end the session
	// while stdin still has something to say (nothing of it is dropped);
	// stdin's end does, as with nc.
	t.Run("nc closes, tuple connect ends when its stdin ends", func(t *testing.T) {
		ns := interopNS(t)
		server := startIn(t, ns, false, "nc", "-N", "-l", "10.0.0.1", "9000").run(nil)
		server.stdin.Write([]byte("from nc\n"))
		server.stdin.Close() // nc -N shuts its write side down
		waitListening(t, ns, "9000")
		client := startIn(t, ns, false, "tuple", "connect", "10.0.0.1", "9000").run(nil)
		client.waitStdout("from nc\n")
		select {
		case <-client.done:
			t.Fatalf("tuple connect ended with stdin open: %v %s", client.err, client.stderr.String())
		case <-time.After(1500 * time.Millisecond): // the old rule ended it after 1 s
		}
		client.stdin.Write([]byte("late\n"))
		client.stdin.Close()
		client.wantExit0("from nc\n", "what nc sent")
		server.wantExit0("late\n", "what stdin sent after nc closed")
	})
}

func TestListenExecEnvironment(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32", "10.0.0.2/32")
	server := startIn(t, ns, false, "tuple", "listen", "-k", "-v", "-e",
		`echo "$TUPLE_LOCAL_ADDR $TUPLE_LOCAL_PORT $TUPLE_REMOTE_ADDR $TUPLE_REMOTE_PORT $TUPLE_PROTO"`,
		"10.0.0.1", "9000").run(nil)
	server.waitStderr("listening on")
	for _, port := range []string{"40001", "40002"} {
		client := startIn(t, ns, false, "tuple", "connect", "-s", "10.0.0.2", "-p", port, "10.0.0.1", "9000").run(nil)
		client.stdin.Close()
		client.wantExit0(fmt.Sprintf("10.0.0.1 9000 10.0.0.2 %s tcp\n", port), "the -e command's environment")
	}
	server.waitStderr("accepted 10.0.0.1:9000 <- 10.0.0.2:40002 (tcp)")
}

// The netcat file-transfer idiom: `tuple listen >file </dev/null` shuts its
// side down at once, and `tuple connect <file` must still deliver all of it.
func TestFileTransferToSilentListener(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	server := startIn(t, ns, true, "tuple", "listen", "-v", "10.0.0.1", "9000").run(nil)
	server.waitStderr("listening on")
	server.stdin.Close()
	client := startIn(t, ns, false, "tuple", "connect", "10.0.0.1", "9000").run(nil)
	got, _ := drain(server.outR)
	release := make(chan struct{})
	close(release)
	sent := <-feed(client.stdin, release)
	received := <-got
	if sent.err != nil || received.err != nil || received.n != sent.n || received.sum != sent.sum {
		t.Errorf("sent %d bytes (%v), the listener wrote %d (%v), checksums equal: %v",
			sent.n, sent.err, received.n, received.err, received.sum == sent.sum)
	}
	for _, p := range []*proc{client, server} {
		if code := p.wait(20 * time.Second); code != 0 {
			t.Errorf("%s exited %d: %s", p.name, code, p.stderr.String())
		}
	}
}
