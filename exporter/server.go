package exporter

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// ServerOptions bound what clients can make the metrics server hold.
type ServerOptions struct {
	// MaxConns is the most connections held at once (0 means 256). When
	// a new connection would exceed it, the connection idle the longest
	// (between requests, or connected without a request yet) is closed to
	// make room; with none idle, the new one is closed at once. Idle
	// keep-alive clients therefore never keep a scrape out.
	MaxConns int
	// IdleTimeout closes keep-alive connections idle this long (0 means
	// 30 s).
	IdleTimeout time.Duration
	// ScrapeTimeout is the longest a scrape should take (0 means 10 s).
	// A response may take far longer on a loaded host with many sockets
	// (the soak in docs/benchmarks.md saw 20 s): the write deadline is
	// twelve times this, so only a client that stopped reading is cut.
	ScrapeTimeout time.Duration
	// Log receives one line when connections are being shed, at most
	// once a minute.
	Log func(msg string)
}

// Server is an http.Server with the exporter's limits: read, write and
// idle timeouts, a header size cap, and a cap on connections.
type Server struct {
	http *http.Server
	lim  *connLimiter
}

// NewServer returns a server for h (usually Handler's).
func NewServer(h http.Handler, opt ServerOptions) *Server {
	if opt.MaxConns <= 0 {
		opt.MaxConns = 256
	}
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = 30 * time.Second
	}
	if opt.ScrapeTimeout <= 0 {
		opt.ScrapeTimeout = 10 * time.Second
	}
	lim := &connLimiter{max: opt.MaxConns, conns: map[net.Conn]*connInfo{}, log: opt.Log}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      12 * opt.ScrapeTimeout,
		IdleTimeout:       opt.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ConnState:         lim.connState,
	}
	return &Server{http: srv, lim: lim}
}

// Serve serves on ln until Shutdown; it returns http.ErrServerClosed then.
// Call it once: the connection cap belongs to one listener.
func (s *Server) Serve(ln net.Listener) error {
	s.lim.Listener = ln
	return s.http.Serve(s.lim)
}

// Shutdown stops accepting, closes idle connections and waits for the
// scrapes in flight, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// Conns reports the connections held now (for tests and logs).
func (s *Server) Conns() int {
	s.lim.mu.Lock()
	defer s.lim.mu.Unlock()
	return len(s.lim.conns)
}

// connInfo is what the limiter knows of one connection.
type connInfo struct {
	state http.ConnState
	since time.Time // when it entered state
}

// connLimiter is the listener side of MaxConns: Accept makes room by
// closing the longest-idle connection, and the server's ConnState hook
// keeps each connection's state.
type connLimiter struct {
	net.Listener
	max     int
	log     func(string)
	mu      sync.Mutex
	conns   map[net.Conn]*connInfo
	lastLog time.Time
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if len(l.conns) >= l.max {
			victim := l.longestIdle()
			if victim == nil {
				l.note("connection cap reached with every connection busy: new connection closed")
				l.mu.Unlock()
				c.Close()
				continue
			}
			delete(l.conns, victim)
			l.note("connection cap reached: closing the longest-idle connections to make room")
			victim.Close()
		}
		l.conns[c] = &connInfo{state: http.StateNew, since: time.Now()}
		l.mu.Unlock()
		return c, nil
	}
}

// longestIdle is the connection that has waited longest without a request
// in flight, nil if every one is busy. Called with mu held.
func (l *connLimiter) longestIdle() net.Conn {
	var victim net.Conn
	var since time.Time
	for c, ci := range l.conns {
		if ci.state != http.StateIdle && ci.state != http.StateNew {
			continue
		}
		if victim == nil || ci.since.Before(since) {
			victim, since = c, ci.since
		}
	}
	return victim
}

// note logs msg at most once a minute. Called with mu held.
func (l *connLimiter) note(msg string) {
	if l.log != nil && time.Since(l.lastLog) > time.Minute {
		l.lastLog = time.Now()
		l.log(msg)
	}
}

func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(l.conns, c)
	default:
		if ci, ok := l.conns[c]; ok {
			ci.state, ci.since = st, time.Now()
		}
	}
}
