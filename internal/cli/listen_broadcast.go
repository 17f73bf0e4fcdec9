package cli

import (
	"github.com/tuple-net/tuple/internal/sockaddr"

	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// broadcastQueue is how many reads of standard input a --broadcast client
// may have queued; broadcastLag is how long standard input waits for a
// client whose queue is full before leaving it out of the broadcast.
var (
	broadcastQueue = 64
	broadcastLag   = 10 * time.Second
)

// broadcast sends what standard input reads to every client of a -k
// server connected at the time (--broadcast). Each client has a queue and
// a writer of its own. Standard input is read no faster than the slowest
// client takes it (a file is sent whole to every client), but a client
// that takes nothing for broadcastLag is left out of the broadcast, and
// stderr says so. Once standard input ends, each client's write side is
// shut down after what it was sent (unless --no-shutdown), and a client
// that connects later is shut down at once.
type broadcast struct {
	mu       sync.Mutex
	clients  map[*broadcastClient]struct{}
	ended    bool // standard input ended
	shutdown bool // shut write sides down once standard input ended
	errOut   io.Writer
}

type broadcastClient struct {
	conn  net.Conn
	queue chan []byte   // reads of standard input; nil: it ended
	quit  chan struct{} // closed when the client leaves (under broadcast.mu)
	done  chan struct{} // closed when the writer has returned
	sent  atomic.Int64
}

func newBroadcast(shutdown bool, errOut io.Writer) *broadcast {
	return &broadcast{clients: map[*broadcastClient]struct{}{}, shutdown: shutdown, errOut: errOut}
}

// add starts sending to conn; remove, called once conn is done with, stops
// the sending and waits for it. sent counts the bytes conn was sent.
func (b *broadcast) add(conn net.Conn) (remove func(), sent func() int64) {
	c := &broadcastClient{conn: conn, queue: make(chan []byte, broadcastQueue),
		quit: make(chan struct{}), done: make(chan struct{})}
	b.mu.Lock()
	b.clients[c] = struct{}{}
	if b.ended {
		c.queue <- nil // room: the queue is new
	}
	b.mu.Unlock()
	go b.write(c)
	return func() { b.leave(c); <-c.done }, c.sent.Load
}

// leave takes c out of the broadcast: its writer returns, dropping what
// is queued.
func (b *broadcast) leave(c *broadcastClient) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.clients[c]; ok {
		delete(b.clients, c)
		close(c.quit)
	}
}

// write sends c its queue until c leaves or standard input ends, then
// shuts c's write side down.
func (b *broadcast) write(c *broadcastClient) {
	defer close(c.done)
	for {
		select {
		case <-c.quit:
			return
		case chunk := <-c.queue:
			if chunk == nil {
				if cw, ok := c.conn.(interface{ CloseWrite() error }); ok && b.shutdown {
					_ = cw.CloseWrite() // a connection already closed has nothing to shut
				}
				return
			}
			n, err := c.conn.Write(chunk)
			c.sent.Add(int64(n))
			if err != nil {
				b.leave(c)
				return
			}
		}
	}
}

// readFrom sends every read of in to the clients, then its end.
func (b *broadcast) readFrom(in io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			b.send(bytes.Clone(buf[:n])) // queued: never the buffer read into next
		}
		if err != nil {
			b.mu.Lock()
			b.ended = true
			b.mu.Unlock()
			b.send(nil)
			return
		}
	}
}

// send queues chunk (nil: standard input's end) for every client, waiting
// up to broadcastLag for those whose queue is full.
func (b *broadcast) send(chunk []byte) {
	b.mu.Lock()
	clients := make([]*broadcastClient, 0, len(b.clients))
	for c := range b.clients {
		clients = append(clients, c)
	}
	b.mu.Unlock()
	var lag context.Context // made when a client first keeps standard input waiting
	for _, c := range clients {
		select {
		case c.queue <- chunk:
			continue
		default:
		}
		if lag == nil {
			var cancel context.CancelFunc
			lag, cancel = context.WithTimeout(context.Background(), broadcastLag)
			defer cancel()
		}
		select {
		case c.queue <- chunk:
		case <-c.quit:
		case <-lag.Done():
			b.leave(c)
			warnf(b.errOut, "tuple: %s kept standard input waiting %v: left out of the broadcast\n",
				formatAddrPort(sockaddr.OfNet(c.conn.RemoteAddr())), broadcastLag)
		}
	}
}
