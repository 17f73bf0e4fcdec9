package broker

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Config tunes a Server. The zero value is usable.
type Config struct {
	// Audit receives one record per request and per released socket;
	// nil discards them. Use a slog.JSONHandler for one JSON line each.
	Audit *slog.Logger
	// MaxConns bounds open client connections (default 256); MaxConnsPerUID
	// bounds them per uid (default 16), so one user cannot starve others.
	MaxConns, MaxConnsPerUID int
	// IdleTimeout closes a connection that sends nothing for this long
	// (default 30s).
	IdleTimeout time.Duration
	// SweepInterval is how often the broker checks which handed-out
	// sockets are still held (default 5s); it also checks before a quota
	// denial, on list and on each metrics scrape.
	SweepInterval time.Duration
	// ProcRoot is the procfs mount ("/proc" when empty).
	ProcRoot string
}

func (c *Config) defaults() {
	if c.Audit == nil {
		c.Audit = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 256
	}
	if c.MaxConnsPerUID <= 0 {
		c.MaxConnsPerUID = 16
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 5 * time.Second
	}
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
}

// Server hands out sockets by policy. Its methods are safe for concurrent
// use. It keeps no copy of a socket it handed out: a socket counts as live
// while the kernel's socket table (sock_diag) still has its inode, that is
// while any process holds a descriptor of it.
type Server struct {
	cfg Config

	mu       sync.Mutex
	policy   *Policy
	live     map[uint64]*liveEntry
	nextID   uint64
	perUID   map[uint32]int    // live sockets per uid (pending included)
	perKey   map[uidKey]int    // live sockets per uid and grant key
	stats    map[uint32]*Stats // request counters per uid
	conns    int
	connsUID map[uint32]int
	sweeping chan struct{} // closed when the quota-driven sweep in flight ends

	reloads, reloadErrors atomic.Uint64
	panics                atomic.Uint64
}

type uidKey struct {
	uid uint32
	key string
}

type liveEntry struct {
	LiveGrant
	key     string
	pending bool // reserved, not yet handed over
}

// Stats counts one uid's requests.
type Stats struct {
	Granted     uint64 // sockets handed over
	Denied      uint64 // requests refused (policy, quota, bad request)
	QuotaDenied uint64 // of Denied, refused for a quota
	Failed      uint64 // allowed but the socket could not be made or handed over
}

// NewServer returns a broker applying p.
func NewServer(p *Policy, cfg Config) *Server {
	cfg.defaults()
	return &Server{
		cfg:      cfg,
		policy:   p,
		live:     map[uint64]*liveEntry{},
		perUID:   map[uint32]int{},
		perKey:   map[uidKey]int{},
		stats:    map[uint32]*Stats{},
		connsUID: map[uint32]int{},
	}
}

// Policy returns the policy in force.
func (s *Server) Policy() *Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy
}

// Reload replaces the policy. Sockets already handed out stay with their
// holders and keep counting against the quota of the grant with the same
// Key, if the new policy still has one.
func (s *Server) Reload(p *Policy) {
	s.mu.Lock()
	s.policy = p
	s.mu.Unlock()
	s.reloads.Add(1)
	s.cfg.Audit.Info("reload", "decision", "reload", "grants", len(p.Grants))
}

// ReloadFailed records a policy that could not be read; the old one stays.
func (s *Server) ReloadFailed(err error) {
	s.reloadErrors.Add(1)
	s.cfg.Audit.Error("reload", "decision", "error", "reason", "policy kept: "+err.Error())
}

// Panics counts request handlers that panicked (and were contained).
func (s *Server) Panics() uint64 { return s.panics.Load() }

// Reloads counts policy reloads: those applied and those that failed (the
// old policy kept).
func (s *Server) Reloads() (ok, failed uint64) { return s.reloads.Load(), s.reloadErrors.Load() }

// usage is the Usage view of the counters; call with s.mu held.
type usage struct{ s *Server }

func (u usage) Live(uid uint32, key string) int { return u.s.perKey[uidKey{uid, key}] }
func (u usage) LiveTotal(uid uint32) int        { return u.s.perUID[uid] }

// reserve records a pending grant so concurrent requests see it in quotas.
func (s *Server) reserve(peer Peer, r *Request, g *Grant) *liveEntry {
	s.nextID++
	e := &liveEntry{LiveGrant: LiveGrant{ID: s.nextID, UID: peer.UID, GID: peer.GID, PID: peer.PID,
		Proto: r.Proto, Listen: r.Listen, Group: g.Group, Grant: g.Index}, key: g.Key(), pending: true}
	s.live[e.ID] = e
	s.perUID[peer.UID]++
	s.perKey[uidKey{peer.UID, e.key}]++
	return e
}

// dropLocked forgets a grant; call with s.mu held.
func (s *Server) dropLocked(e *liveEntry) {
	if _, ok := s.live[e.ID]; !ok {
		return
	}
	delete(s.live, e.ID)
	if s.perUID[e.UID]--; s.perUID[e.UID] <= 0 {
		delete(s.perUID, e.UID)
	}
	k := uidKey{e.UID, e.key}
	if s.perKey[k]--; s.perKey[k] <= 0 {
		delete(s.perKey, k)
	}
}

func (s *Server) statsLocked(uid uint32) *Stats {
	st := s.stats[uid]
	if st == nil {
		st = &Stats{}
		s.stats[uid] = st
	}
	return st
}

// Live lists the handed-out sockets still held, after checking with the
// kernel, oldest first.
func (s *Server) Live(ctx context.Context) []LiveGrant {
	s.sweep(ctx, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]LiveGrant, 0, len(s.live))
	for _, e := range s.live {
		if !e.pending {
			out = append(out, e.LiveGrant)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// UIDUsage is one uid's counters and live sockets, for metrics.
type UIDUsage struct {
	UID      uint32
	Stats    Stats
	Live     int
	PerGrant map[int]int // live sockets per policy grant index (grants of the current policy)
}

// Usage reports every uid's counters and live sockets (after a sweep).
func (s *Server) Usage(ctx context.Context) []UIDUsage {
	s.sweep(ctx, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	byUID := map[uint32]*UIDUsage{}
	get := func(uid uint32) *UIDUsage {
		u := byUID[uid]
		if u == nil {
			u = &UIDUsage{UID: uid, PerGrant: map[int]int{}}
			byUID[uid] = u
		}
		return u
	}
	for uid, st := range s.stats {
		get(uid).Stats = *st
	}
	for uid, n := range s.perUID {
		get(uid).Live = n
	}
	for k, n := range s.perKey {
		for i := range s.policy.Grants {
			if s.policy.Grants[i].Key() == k.key {
				get(k.uid).PerGrant[s.policy.Grants[i].Index] += n
			}
		}
	}
	out := make([]UIDUsage, 0, len(byUID))
	for _, u := range byUID {
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

// sweep forgets handed-out sockets that no process holds any more. With uid
// set it checks only that uid's. If the kernel cannot be asked, every
// socket stays counted: quotas err towards refusing.
func (s *Server) sweep(ctx context.Context, uid *uint32) {
	s.mu.Lock()
	var check []LiveGrant
	for _, e := range s.live {
		if !e.pending && (uid == nil || e.UID == *uid) {
			check = append(check, e.LiveGrant)
		}
	}
	s.mu.Unlock()
	if len(check) == 0 {
		return
	}
	held, err := heldInodes(ctx, check)
	if err != nil {
		s.cfg.Audit.Error("sweep", "decision", "error", "reason", "cannot read the socket table, keeping every grant: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range check {
		if held[g.Inode] {
			continue
		}
		e, ok := s.live[g.ID]
		if !ok || e.pending {
			continue
		}
		s.dropLocked(e)
		s.cfg.Audit.Info("release", "decision", "release", "id", e.ID,
			slog.Group("peer", "pid", e.PID, "uid", e.UID, "gid", e.GID),
			"local", e.Local.String(), "proto", e.Proto.String(), "held", time.Since(e.Since).Round(time.Millisecond).String())
	}
}

// sweepForQuota checks with the kernel before a quota denial. One sweep
// runs at a time (requests arriving meanwhile share it), and a request
// waits for it at most quotaSweepWait: on a busy host a dump of the socket
// table can take seconds, and the socket it would free is then noticed by
// the sweep still running or the next periodic one.
func (s *Server) sweepForQuota(ctx context.Context) {
	s.mu.Lock()
	done := s.sweeping
	if done == nil {
		done = make(chan struct{})
		s.sweeping = done
		go func() {
			s.sweep(context.WithoutCancel(ctx), nil)
			s.mu.Lock()
			s.sweeping = nil
			s.mu.Unlock()
			close(done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-done:
	case <-time.After(quotaSweepWait):
	case <-ctx.Done():
	}
}

// quotaSweepWait bounds how long a request waits for a sweep.
const quotaSweepWait = 2 * time.Second

// handler wraps one connection's work so a panic is contained and counted.
func (s *Server) contain(c net.Conn, what string) {
	if v := recover(); v != nil {
		s.panics.Add(1)
		s.cfg.Audit.Error("panic", "decision", "error", "reason", what, "panic", v)
		c.Close()
	}
}
