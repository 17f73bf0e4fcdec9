package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		c.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// serveOnce plays the peer: it reads everything until EOF (which only a
// half-close from Run delivers), then sends reply and closes.
func serveOnce(peer net.Conn, reply []byte) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		peer.Write(reply)
		peer.Close()
		got <- b
	}()
	return got
}

func TestBothWaysBinaryWithHalfClose(t *testing.T) {
	client, server := tcpPair(t)
	up, down := randomBytes(t, 3<<20+17), randomBytes(t, 2<<20+5)
	peerGot := serveOnce(server, down)
	var out bytes.Buffer
	res, err := Run(context.Background(), client, bytes.NewReader(up), &out, Options{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := <-peerGot; !bytes.Equal(got, up) {
		t.Errorf("peer received %d bytes, want the %d sent", len(got), len(up))
	}
	if !bytes.Equal(out.Bytes(), down) {
		t.Errorf("output has %d bytes, want the %d the peer sent after our half-close", out.Len(), len(down))
	}
	if res.Sent != int64(len(up)) || res.Received != int64(len(down)) {
		t.Errorf("Result %+v, want Sent %d Received %d", res, len(up), len(down))
	}
	if _, err := client.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("conn still open after Run: write error %v", err)
	}
}

func TestNoShutdownKeepsWriteSideOpen(t *testing.T) {
	client, server := tcpPair(t)
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		_, err := Run(context.Background(), client, strings.NewReader("hello"), &out, Options{NoShutdown: true})
		done <- err
	}()
	buf := make([]byte, 16)
	n, err := io.ReadFull(server, buf[:5])
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("peer read %q, %v", buf[:n], err)
	}
	server.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := server.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("with NoShutdown the peer must see no EOF, got %v", err)
	}
	server.Write([]byte("bye"))
	server.Close()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if out.String() != "bye" {
		t.Errorf("output %q, want %q", out.String(), "bye")
	}
}

// A peer that closes ends the session although input is still open; Run
// interrupts the blocked input read (a net.Pipe has deadlines) and leaves
// no goroutine behind (leakcheck in TestMain).
func TestPeerCloseEndsSessionWithInputOpen(t *testing.T) {
	client, server := tcpPair(t)
	in, feed := net.Pipe()
	defer in.Close()
	defer feed.Close()
	server.Write([]byte("greeting"))
	server.Close()
	var out bytes.Buffer
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := Run(context.Background(), client, in, &out, Options{Linger: 150 * time.Millisecond})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the peer closed")
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("session ended %v after the peer closed, before input was silent for Linger", el)
	}
	if out.String() != "greeting" {
		t.Errorf("output %q", out.String())
	}
	// The input's deadline was cleared again: it is still usable.
	go feed.Write([]byte("z"))
	in.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := in.Read(make([]byte, 1)); err != nil {
		t.Errorf("input unusable after Run: %v", err)
	}
}

// The peer closing its side first must not cut short input that keeps
// coming: `tuple listen </dev/null` half-closes at once, and a file sent to
// it arrives whole.
func TestPeerEOFDoesNotCutInputShort(t *testing.T) {
	client, server := tcpPair(t)
	server.CloseWrite() // the peer has nothing to say
	peerGot := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server)
		peerGot <- b
	}()
	want := randomBytes(t, 64<<10)
	in, feed := io.Pipe()
	go func() { // slower than the peer's EOF, faster than Linger
		for rest := want; len(rest) > 0; rest = rest[4<<10:] {
			chunk := rest[:4<<10]
			time.Sleep(10 * time.Millisecond)
			feed.Write(chunk)
		}
		feed.Close()
	}()
	if _, err := Run(context.Background(), client, in, io.Discard, Options{Linger: 500 * time.Millisecond}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := <-peerGot; !bytes.Equal(got, want) {
		t.Errorf("peer received %d bytes, want all %d", len(got), len(want))
	}
}

func TestNegativeLingerEndsAtPeerEOF(t *testing.T) {
	client, server := tcpPair(t)
	server.Close()
	in, feed := net.Pipe()
	defer in.Close()
	defer feed.Close()
	start := time.Now()
	if _, err := Run(context.Background(), client, in, io.Discard, Options{Linger: -1}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > DefaultLinger/2 {
		t.Errorf("negative Linger: session took %v after the peer's EOF", el)
	}
}

func TestContextCancelEndsSession(t *testing.T) {
	client, _ := tcpPair(t)
	in, feed := net.Pipe()
	defer in.Close()
	defer feed.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, client, in, io.Discard, Options{})
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run ignored cancellation")
	}
}

func TestNilInputWaitsForPeer(t *testing.T) {
	client, server := tcpPair(t)
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := Run(context.Background(), client, nil, &out, Options{})
		done <- err
	}()
	server.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("nil input must not shut the socket down, peer read: %v", err)
	}
	server.Write([]byte("data"))
	server.CloseWrite()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out.String() != "data" {
		t.Errorf("output %q", out.String())
	}
}

// UDP has no EOF: IdleAfterInput ends the session once input ended and the
// peer went quiet.
func TestUDPIdleAfterInput(t *testing.T) {
	peer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	go func() {
		buf := make([]byte, 100)
		n, from, err := peer.ReadFrom(buf)
		if err == nil {
			peer.WriteTo(append([]byte("re:"), buf[:n]...), from)
		}
	}()
	conn, err := net.Dial("udp", peer.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	start := time.Now()
	_, err = Run(context.Background(), conn, strings.NewReader("ping"), &out, Options{IdleAfterInput: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "re:ping" {
		t.Errorf("output %q, want re:ping", out.String())
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 5*time.Second {
		t.Errorf("session took %v, want about the idle time", el)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestOutputErrorEndsSession(t *testing.T) {
	client, server := tcpPair(t)
	server.Write([]byte("x"))
	_, err := Run(context.Background(), client, nil, failingWriter{}, Options{})
	if err == nil || !strings.Contains(err.Error(), "write output: disk full") {
		t.Fatalf("Run: %v, want the output error", err)
	}
}

func TestResetIsAnError(t *testing.T) {
	client, server := tcpPair(t)
	server.SetLinger(0)
	server.Close() // RST
	time.Sleep(20 * time.Millisecond)
	_, err := Run(context.Background(), client, nil, io.Discard, Options{})
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("Run: %v, want connection reset", err)
	}
}

func FuzzRelay(f *testing.F) {
	f.Add([]byte("hello"), []byte("world"), uint16(0))
	f.Add([]byte{}, []byte{0, 0, 255}, uint16(1))
	f.Add(bytes.Repeat([]byte{0xff, 0, '\n', '\r'}, 5000), []byte{}, uint16(7))
	f.Fuzz(func(t *testing.T, up, down []byte, bufSize uint16) {
		client, server := tcpPair(t)
		peerGot := serveOnce(server, down)
		var out bytes.Buffer
		opt := Options{BufferSize: int(bufSize % 4096), Linger: time.Duration(bufSize % 5)}
		res, err := Run(context.Background(), client, bytes.NewReader(up), &out, opt)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if got := <-peerGot; !bytes.Equal(got, up) {
			t.Fatalf("peer got %d bytes, want %d", len(got), len(up))
		}
		if !bytes.Equal(out.Bytes(), down) || res.Received != int64(len(down)) || res.Sent != int64(len(up)) {
			t.Fatalf("output %d bytes (Result %+v), want %d", out.Len(), res, len(down))
		}
	})
}

// LingerUntilEOF: however long input pauses after the peer's EOF, what it
// sends afterwards still arrives (nc's client rule).
func TestLingerUntilEOFWaitsOutLongPauses(t *testing.T) {
	client, server := tcpPair(t)
	server.CloseWrite()
	peerGot := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server)
		peerGot <- b
	}()
	in, feed := io.Pipe()
	go func() {
		feed.Write([]byte("first"))
		time.Sleep(300 * time.Millisecond) // longer than Linger below would allow
		feed.Write([]byte("second"))
		feed.Close()
	}()
	if _, err := Run(context.Background(), client, in, io.Discard, Options{Linger: LingerUntilEOF}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := string(<-peerGot); got != "firstsecond" {
		t.Errorf("peer received %q, want everything", got)
	}
}

// Quit ends the session QuitAfterInput after input's EOF although the peer
// never closes; 0 ends it at once.
func TestQuitAfterInput(t *testing.T) {
	for _, d := range []time.Duration{0, 200 * time.Millisecond} {
		client, _ := tcpPair(t)
		start := time.Now()
		if _, err := Run(context.Background(), client, strings.NewReader("x"), io.Discard, Options{Quit: true, QuitAfterInput: d}); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if el := time.Since(start); el < d || el > d+time.Second {
			t.Errorf("Quit after %v: session took %v", d, el)
		}
	}
}

// A datagram larger than DefaultBufferSize arrives whole with
// DatagramBufferSize, and an input read of MaxDatagramInput is one datagram.
func TestLargeDatagramsWhole(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	conn, err := net.Dial("udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	want := randomBytes(t, MaxDatagramInput)
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, 70000)
		n, from, err := pc.ReadFrom(buf)
		if err != nil || !bytes.Equal(buf[:n], want) {
			got <- -1
			return
		}
		got <- n
		pc.WriteTo(want, from)
	}()
	var out bytes.Buffer
	_, err = Run(context.Background(), conn, bytes.NewReader(want), &out,
		Options{BufferSize: DatagramBufferSize, InputChunk: MaxDatagramInput, IdleAfterInput: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != len(want) {
		t.Errorf("the peer got a datagram of %d bytes, want %d", n, len(want))
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("output has %d bytes, want the %d-byte reply", out.Len(), len(want))
	}
}
