package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// DefaultBufferSize is the copy buffer per direction for streams.
const DefaultBufferSize = 32 << 10

// Datagram sizes: DatagramBufferSize holds any UDP datagram the kernel
// delivers (a read into a smaller buffer silently drops the rest of the
// datagram); MaxDatagramInput is the largest input read sent as one
// datagram, the IPv4 payload limit (65,535 - 20 - 8), which IPv6 and
// v4-mapped peers both accept.
const (
	DatagramBufferSize = 64 << 10
	MaxDatagramInput   = 65507
)

// Options tune a session. The zero value is netcat's default: half-close on
// input EOF, wait for the peer to close.
type Options struct {
	// NoShutdown keeps the socket's write side open when input ends.
	NoShutdown bool
	// IdleAfterInput, when positive, ends the session once input has
	// ended and nothing arrived from the peer for this long. It is for
	// connections that never see EOF (UDP); zero waits for the peer.
	IdleAfterInput time.Duration
	// BufferSize is the copy buffer per direction (DefaultBufferSize when 0).
	// For datagrams use DatagramBufferSize and InputChunk.
	BufferSize int
	// InputChunk, when positive, is the most read from input at once: with
	// UDP one input read is one datagram (MaxDatagramInput).
	InputChunk int
	// Linger is how long input may stay silent after the peer ended its
	// side before the session ends (DefaultLinger when 0; negative ends
	// the session at the peer's EOF at once, as ncat does). Input that
	// keeps coming is sent in full: `tuple listen </dev/null` closing its
	// side first must not cut a file being sent to it short.
	// LingerUntilEOF waits for the input's end however long it pauses
	// (nc's client rule: nothing of the input is dropped).
	Linger time.Duration
	// Quit ends the session QuitAfterInput after input ended, even if the
	// peer has not closed its side (nc -q SECS; 0 ends it at once).
	Quit           bool
	QuitAfterInput time.Duration
}

// LingerUntilEOF is the Options.Linger that never gives up on the input.
const LingerUntilEOF = time.Duration(math.MaxInt64)

// DefaultLinger is Options.Linger's default: long enough for a pipe or a
// file, short enough that an interactive session ends soon after the peer
// hung up.
const DefaultLinger = time.Second

// Result counts the bytes each direction carried.
type Result struct {
	Sent     int64 // input -> conn
	Received int64 // conn -> output
}

// closeWriter is a connection that can shut down its write side alone
// (*net.TCPConn, *net.UnixConn).
type closeWriter interface{ CloseWrite() error }

// Run relays between conn and input/output until the session ends (see the
// package documentation) and closes conn. A nil input means nothing is sent
// and the socket is never shut down by Run; the session then ends when the
// peer closes. Run returns nil when the peer ended the session normally,
// ctx.Err() when ctx ended it, or the first read or write error.
func Run(ctx context.Context, conn net.Conn, input io.Reader, output io.Writer, opt Options) (Result, error) {
	s := &session{conn: conn, opt: opt, idle: &idleTimer{d: opt.IdleAfterInput}, linger: opt.Linger}
	if s.linger == 0 {
		s.linger = DefaultLinger
	}
	s.start(input, output)
	err := s.wait(ctx)

	// Closing conn unblocks both goroutines' socket calls; a local read or
	// write still blocked is interrupted through its deadline when it has one.
	closeErr := conn.Close()
	interrupt(s.inGone, readDeadline(input))
	interrupt(s.outGone, writeDeadline(output))
	if err == nil && closeErr != nil && !errors.Is(closeErr, net.ErrClosed) {
		err = closeErr
	}
	return Result{Sent: s.sent.Load(), Received: s.received.Load()}, err
}

// session is one Run: its two copying goroutines and what the wait for
// the end knows of them.
type session struct {
	conn   net.Conn
	opt    Options
	linger time.Duration
	idle   *idleTimer
	in     inputState

	sent, received  atomic.Int64
	outErr, inErr   chan error    // each goroutine's result
	outGone, inGone chan struct{} // closed when each goroutine has exited

	inputDone, peerDone bool
	lingerTick, quit    <-chan time.Time
	stops               []func() // the timers to stop when the wait ends
}

// start runs the goroutine copying conn to output and, unless input is
// nil, the one copying input to conn.
func (s *session) start(input io.Reader, output io.Writer) {
	size := s.opt.BufferSize
	if size <= 0 {
		size = DefaultBufferSize
	}
	s.outErr, s.outGone = make(chan error, 1), make(chan struct{})
	go func() {
		defer close(s.outGone)
		s.outErr <- pumpOut(s.conn, output, make([]byte, size), &s.received, s.idle)
	}()
	s.inErr, s.inGone = make(chan error, 1), make(chan struct{})
	s.inputDone = input == nil
	if input == nil {
		close(s.inGone)
		return
	}
	chunk := size
	if s.opt.InputChunk > 0 {
		chunk = min(s.opt.InputChunk, size)
	}
	go func() {
		defer close(s.inGone)
		s.inErr <- pumpIn(s.conn, input, make([]byte, chunk), &s.sent, s.opt.NoShutdown, &s.in)
	}()
}

// wait returns when the session ends (see the package documentation), with
// its error: nil for a normal end.
func (s *session) wait(ctx context.Context) error {
	defer func() {
		for _, stop := range s.stops {
			stop()
		}
	}()
	for {
		select {
		case err := <-s.outErr:
			if s.peerEnded(err) {
				return err
			}
		case err := <-s.inErr:
			if s.inputEnded(err) {
				return err
			}
		case <-s.quit:
			return nil
		case <-s.lingerTick:
			if s.in.silentFor() >= s.linger {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// peerEnded takes the end of what the peer sends and tells whether the
// session ends with it. When input may still have more to send, it lingers
// until input has been silent for Linger (or until input ends).
func (s *session) peerEnded(err error) bool {
	if err != nil || s.inputDone || s.linger < 0 {
		return true
	}
	s.peerDone = true
	if s.linger != LingerUntilEOF {
		t := time.NewTicker(max(min(s.linger/4, 100*time.Millisecond), time.Millisecond))
		s.stops = append(s.stops, t.Stop)
		s.lingerTick = t.C
	}
	return false
}

// inputEnded takes the end of input and tells whether the session ends
// with it: on an error, once the peer is done too, or at once with Quit.
// Otherwise the wait goes on for the peer (QuitAfterInput, IdleAfterInput
// bound it).
func (s *session) inputEnded(err error) bool {
	s.inputDone = true
	if err != nil || s.peerDone {
		return true
	}
	if s.opt.Quit {
		if s.opt.QuitAfterInput <= 0 {
			return true
		}
		t := time.NewTimer(s.opt.QuitAfterInput)
		s.stops = append(s.stops, func() { t.Stop() })
		s.quit = t.C
	}
	if s.idle.d > 0 {
		s.idle.start(s.conn)
	}
	return false
}

// interrupt stops a copying goroutine that may be blocked in a local Read
// or Write (gone is closed when it exits). With a deadline setter (the
// reader or writer has one) the call is interrupted and waited for, then
// the deadline is cleared; otherwise the goroutine is left to finish its
// current call, which nothing can stop.
func interrupt(gone chan struct{}, setDeadline func(time.Time) error) {
	select {
	case <-gone:
		return
	default:
	}
	if setDeadline == nil || setDeadline(time.Unix(1, 0)) != nil {
		return
	}
	<-gone
	_ = setDeadline(time.Time{})
}

func readDeadline(r io.Reader) func(time.Time) error {
	if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok {
		return d.SetReadDeadline
	}
	return nil
}

func writeDeadline(w io.Writer) func(time.Time) error {
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		return d.SetWriteDeadline
	}
	return nil
}

// inputState tells how long the input goroutine has been waiting in Read.
type inputState struct {
	reading atomic.Bool
	since   atomic.Int64 // UnixNano when the current Read began
}

func (s *inputState) silentFor() time.Duration {
	if !s.reading.Load() {
		return 0 // busy sending what it read
	}
	return time.Since(time.Unix(0, s.since.Load()))
}

// pumpIn copies input to conn and half-closes conn at input EOF.
func pumpIn(conn net.Conn, input io.Reader, buf []byte, n *atomic.Int64, noShutdown bool, st *inputState) error {
	for {
		st.since.Store(time.Now().UnixNano())
		st.reading.Store(true)
		k, rerr := input.Read(buf)
		st.reading.Store(false)
		if k > 0 {
			if _, err := conn.Write(buf[:k]); err != nil {
				return err
			}
			n.Add(int64(k))
		}
		switch {
		case rerr == io.EOF:
			if noShutdown {
				return nil
			}
			if cw, ok := conn.(closeWriter); ok {
				return cw.CloseWrite()
			}
			return nil
		case rerr != nil:
			return fmt.Errorf("read input: %w", rerr)
		}
	}
}

// pumpOut copies conn to output until conn's read side ends. EOF, and the
// idle timeout after input ended, are normal ends (nil).
func pumpOut(conn net.Conn, output io.Writer, buf []byte, n *atomic.Int64, idle *idleTimer) error {
	for {
		k, rerr := conn.Read(buf)
		if k > 0 {
			if _, err := output.Write(buf[:k]); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			n.Add(int64(k))
			idle.extend(conn)
		}
		switch {
		case rerr == io.EOF:
			return nil
		case rerr != nil && idle.expired(rerr):
			return nil
		case rerr != nil:
			return rerr
		}
	}
}

// idleTimer ends a session that has been quiet for d after input ended,
// through the connection's read deadline.
type idleTimer struct {
	d  time.Duration
	on atomic.Bool
}

func (t *idleTimer) start(conn net.Conn) {
	t.on.Store(true)
	_ = conn.SetReadDeadline(time.Now().Add(t.d))
}

func (t *idleTimer) extend(conn net.Conn) {
	if t.on.Load() {
		_ = conn.SetReadDeadline(time.Now().Add(t.d))
	}
}

func (t *idleTimer) expired(err error) bool {
	return t.on.Load() && errors.Is(err, os.ErrDeadlineExceeded)
}
