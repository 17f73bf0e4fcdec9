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
	size := opt.BufferSize
	if size <= 0 {
		size = DefaultBufferSize
	}
	var sent, received atomic.Int64
	idle := &idleTimer{d: opt.IdleAfterInput}

	outErr := make(chan error, 1)
	outGone := make(chan struct{})
	go func() {
		defer close(outGone)
		outErr <- pumpOut(conn, output, make([]byte, size), &received, idle)
	}()

	inErr := make(chan error, 1)
	inGone := make(chan struct{})
	in := &inputState{}
	inputDone := input == nil
	if input != nil {
		chunk := size
		if opt.InputChunk > 0 {
			chunk = min(opt.InputChunk, size)
		}
		go func() {
			defer close(inGone)
			inErr <- pumpIn(conn, input, make([]byte, chunk), &sent, opt.NoShutdown, in)
		}()
	} else {
		close(inGone)
	}
	linger := opt.Linger
	if linger == 0 {
		linger = DefaultLinger
	}

	var err error
	var lingerTick, quit <-chan time.Time
	peerDone := false
wait:
	for {
		select {
		case err = <-outErr:
			if err != nil || inputDone || linger < 0 {
				break wait
			}
			// The peer is done; input may still have more to send.
			peerDone = true
			if linger == LingerUntilEOF {
				continue
			}
			t := time.NewTicker(max(min(linger/4, 100*time.Millisecond), time.Millisecond))
			defer t.Stop()
			lingerTick = t.C
		case e := <-inErr:
			inputDone = true
			if e != nil || peerDone {
				err = e
				break wait
			}
			if opt.Quit {
				if opt.QuitAfterInput <= 0 {
					break wait
				}
				t := time.NewTimer(opt.QuitAfterInput)
				defer t.Stop()
				quit = t.C
			}
			if idle.d > 0 {
				idle.start(conn)
			}
		case <-quit:
			break wait
		case <-lingerTick:
			if in.silentFor() >= linger {
				break wait
			}
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		}
	}

	// Closing conn unblocks both goroutines' socket calls; a local read or
	// write still blocked is interrupted through its deadline when it has one.
	closeErr := conn.Close()
	interrupt(inGone, readDeadline(input))
	interrupt(outGone, writeDeadline(output))
	if err == nil && closeErr != nil && !errors.Is(closeErr, net.ErrClosed) {
		err = closeErr
	}
	return Result{Sent: sent.Load(), Received: received.Load()}, err
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
