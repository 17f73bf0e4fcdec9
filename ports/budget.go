package ports

import (
	"cmp"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/prefault"
	"github.com/tuple-net/tuple/rules"
)

// TimeWaitLength is how long Linux keeps a TCP socket in TIME_WAIT
// (TCP_TIMEWAIT_LEN); the age of an entry is this minus its time left.
const TimeWaitLength = 60 * time.Second

// Owner is a process holding a socket's descriptor.
type Owner struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
}

// Entry is one TCP socket as the budget needs it: the socket in the rules
// model's terms plus who holds it and, for TIME_WAIT, how long it has left.
type Entry struct {
	Socket   rules.Socket
	TimeLeft time.Duration // TIME_WAIT: time until the entry expires
	Owners   []Owner
}

// Options tune a report.
type Options struct {
	// HogShare is the share of the ephemeral pool (0..1) above which one
	// uid holding ports is a warning; 0 means 0.5.
	HogShare float64
	// SocketRange is the new socket's IP_LOCAL_PORT_RANGE, zero for none.
	SocketRange inet.PortRange
	// Buckets are TCP ports' bind buckets as the kernel holds them
	// (hostmodel.Situation.Buckets, from sockfacts), nil when unread; for
	// their ports they decide whether connect() may share the port.
	Buckets []rules.Bucket
}

// Report is the ephemeral-port budget of one namespace.
type Report struct {
	Range    inet.PortRange   `json:"range"`    // net.ipv4.ip_local_port_range (narrowed by Options.SocketRange)
	Reserved []inet.PortRange `json:"reserved"` // net.ipv4.ip_local_reserved_ports
	// Pool is the number of ports an autobind may take: Range minus the
	// reserved ports.
	Pool int `json:"pool"`
	// ConnectPool is how many of them one connect() search visits (the
	// rules model's search; over an odd-sized range it skips one).
	ConnectPool int `json:"connect_pool"`

	// Ports of the pool held by at least one socket, and of those, held by
	// a bind()/listen() owner (out of connect()'s pool for every
	// destination) or by an owner whose origin is unknown.
	InUse         int `json:"in_use"`
	BindOwned     int `json:"bind_owned"`
	UnknownOrigin int `json:"unknown_origin"`

	// ConnectFreeMin..ConnectFreeMax: ports a connect() to a destination
	// nobody talks to yet could take.
	ConnectFreeMin int `json:"connect_free_min"`
	ConnectFreeMax int `json:"connect_free_max"`
	// BindFree: ports a bind(0.0.0.0:0) without SO_REUSEADDR could take.
	BindFree int `json:"bind_free"`

	TimeWait  int `json:"time_wait"`  // TCP sockets in TIME_WAIT
	BoundOnly int `json:"bound_only"` // TCP sockets bound without listen()/connect()

	Destinations []Destination `json:"destinations"` // busiest first
	// UIDs and Processes hold ports of the pool or bound-only sockets,
	// most ports first.
	UIDs      []Holder `json:"uids"`
	Processes []Holder `json:"processes"`
	Warnings  []string `json:"warnings"`
}

// Destination is the budget of new connect()s from one source address to
// one destination.
type Destination struct {
	Source netip.Addr     `json:"source"`
	Dest   netip.AddrPort `json:"dest"`
	// InUse: ports of the pool used by live sockets with this four-tuple.
	InUse int `json:"in_use"`
	// TimeWait: TIME_WAIT entries with this source and destination, and
	// on how many ports a new connect() may take one over now (the rules
	// model's search; unknown timestamps count as not reusable).
	TimeWait         int `json:"time_wait"`
	TimeWaitReusable int `json:"time_wait_reusable"`
	// NextExpiry is the time until the first of those TIME_WAIT entries
	// expires; 0 when there are none.
	NextExpiry        time.Duration `json:"-"`
	NextExpirySeconds float64       `json:"next_expiry_seconds"`
	// FreeMin..FreeMax is how many ports a new connect() can still take;
	// they differ only when some port's origin (bind or connect) or some
	// TIME_WAIT entry's timestamps are unknown.
	FreeMin int `json:"free_min"`
	FreeMax int `json:"free_max"`
	// Use is the share of the connect pool this destination cannot use
	// (1 - FreeMax/ConnectPool), 0..1.
	Use float64 `json:"use"`
}

// Holder is what one uid (PID 0) or one process holds.
type Holder struct {
	UID  uint32 `json:"uid"`
	PID  int    `json:"pid,omitempty"`
	Comm string `json:"comm,omitempty"`
	// Ports: distinct ports of the pool held by live sockets of the holder.
	Ports int `json:"ports"`
	// BoundOnly: sockets bound without listen() or connect().
	BoundOnly int `json:"bound_only"`
	// Share is Ports over the pool, 0..1.
	Share float64 `json:"share"`
}

// portSet is a set of ports; the census works on bitmaps of the whole port
// space so a table of any size costs the same to intersect.
type portSet [65536 / 64]uint64

func (s *portSet) add(p uint16)         { s[p/64] |= 1 << (p % 64) }
func (s *portSet) has(p uint16) bool    { return s[p/64]&(1<<(p%64)) != 0 }
func (s *portSet) addNew(p uint16) bool { n := !s.has(p); s.add(p); return n }

type destKey struct {
	src  netip.Addr
	dest netip.AddrPort
}

// destAcc is the census of one destination: counts only, no per-port sets
// (the free counts come from the rules model).
type destAcc struct {
	live      int // distinct ports of the pool with a connected socket
	tw        int
	nextExpry time.Duration
}

// Budget computes the report for TCP sockets entries in a namespace with
// host's settings. UDP entries are ignored. It does not modify entries.
//
// Every free count is the rules model's connect() or bind(0) search
// (rules.Model.ConnectPortsMany, Predict) over the table: the kernel's port
// rules live there only. Where a fact is unknown (a port's origin, a
// TIME_WAIT entry's timestamps) the model runs twice, with every unknown
// settled against and for a new connect(), and the counts are the range
// between. The rest of the report is a census: ports in use, TIME_WAIT
// entries, ports per uid and per process.
func Budget(entries []Entry, host rules.Host, opt Options) Report {
	return budget(columnsOf(entries), host, opt)
}

// columns is a table as the budget walks it: the model's TCP sockets that
// hold a port, with each one's TIME_WAIT time left and owners beside it.
// The model is built on socks itself, so they are the budget's own to
// change (unknown facts are settled in place).
type columns struct {
	socks    []rules.Socket
	timeLeft []time.Duration // nil: none known
	owners   [][]Owner       // nil: not read
	// findOwners, when not nil, finds owners instead (a Reader's: the
	// census matches them while the model is indexed).
	findOwners func() [][]Owner
	// keep, when not nil, is the arrays of the previous budget, reused
	// (a Reader's: one scrape after another allocates nothing of the
	// table's size).
	keep *kept
}

// kept is what one budget leaves for the next: the model's index and the
// census's list of ports in use.
type kept struct {
	model rules.Model
	live  []uint64
}

// columnsOf copies the TCP entries that hold a port into columns, a
// TIME_WAIT entry's age taken from its time left.
func columnsOf(entries []Entry) columns {
	var c columns
	for i := range entries {
		e := &entries[i]
		if !budgeted(&e.Socket) {
			continue
		}
		c.socks = append(c.socks, e.Socket)
		c.timeLeft = append(c.timeLeft, e.TimeLeft)
		c.owners = append(c.owners, e.Owners)
		if s := &c.socks[len(c.socks)-1]; s.State == rules.TimeWait && e.TimeLeft > 0 {
			s.TWAge = max(TimeWaitLength-e.TimeLeft, 0)
		}
	}
	return c
}

// budgeted reports whether s counts in the budget: a TCP socket holding a
// port.
func budgeted(s *rules.Socket) bool {
	return s.Proto == inet.TCP && s.State != rules.Unbound && s.Local.Port() != 0
}

// budget is Budget over c, in steps: the pool, the census of what holds
// ports, the model's searches, then the report's lists.
func budget(c columns, host rules.Host, opt Options) Report {
	share := opt.HogShare
	if share <= 0 {
		share = 0.5
	}
	rng, perSocket := rules.EffectiveRange(host, rules.Socket{PortRange: opt.SocketRange})
	// Empty lists rather than nil, so JSON shows [] and not null.
	rep := Report{Range: rng, Reserved: append([]inet.PortRange{}, host.ReservedPorts...),
		Destinations: []Destination{}, UIDs: []Holder{}, Processes: []Holder{}, Warnings: []string{}}
	pool := poolOf(rng, host.ReservedPorts)
	for i := range pool {
		rep.Pool += popcount(pool[i])
	}

	// The census and the model's index are two passes over the table that
	// need nothing of each other: they run side by side (the model is safe
	// for concurrent use; its searches run side by side too). Where
	// unknown facts are settled in place, the census reads the table first.
	// The size of connect()'s pool needs neither.
	var cen census
	var wg sync.WaitGroup
	unknown := hasUnknown(c.socks)
	if unknown {
		cen = takeCensus(c, &pool)
	} else {
		wg.Go(func() { cen = takeCensus(c, &pool) })
	}
	lo, hi := models(c.socks, host, opt.Buckets, unknown, c.keep)
	s := searchPool(host, opt.SocketRange, rng, perSocket)
	// bind(0)'s search needs the model only: it starts while the census
	// may still be counting.
	bound := s.bindSearch(lo)
	wg.Wait()
	s.perTarget(lo, hi, cen.targets())
	bound()
	rep.InUse, rep.TimeWait, rep.BoundOnly = cen.inUse, cen.timeWait, cen.boundOnly
	rep.ConnectPool = s.pool
	rep.BindOwned = s.hi[0].HeldByBind
	rep.UnknownOrigin = s.lo[0].HeldByBind - s.hi[0].HeldByBind
	rep.ConnectFreeMin, rep.ConnectFreeMax = s.free(0)
	rep.BindFree = s.bindFree

	rep.Destinations = destinations(cen, s, rep.Destinations)
	rep.UIDs, rep.Processes = cen.holders.lists(rep.UIDs, rep.Processes, rep.Pool)
	rep.Warnings = warnings(rep, share)
	return rep
}

// census is what the table holds, counted in one pass: ports in use,
// TIME_WAIT and bound-only sockets, each destination's sockets and each
// holder's ports.
type census struct {
	inUse, timeWait, boundOnly int
	keys                       []destKey
	dests                      []destAcc // parallel to keys
	holders                    holderTally
}

// takeCensus counts c against the pool.
func takeCensus(c columns, pool *portSet) census {
	cen := census{holders: holderTally{byKey: map[holderKey]*holderAcc{}}}
	if c.findOwners != nil {
		c.owners = c.findOwners()
	}
	// Listening ports tell accepted children (same local port as a
	// listener) apart from outgoing connections.
	var listening, used portSet
	for i := range c.socks {
		if s := &c.socks[i]; s.State == rules.Listen {
			listening.add(s.Local.Port())
		}
	}
	index := map[destKey]int{}
	lastDest := -1
	var live []uint64 // destination index<<16 | port of each connected socket in the pool
	if c.keep != nil {
		live = c.keep.live[:0]
		defer func() { c.keep.live = live[:0] }()
	}
	if cap(live) < len(c.socks) { // at most one per socket: never grown by append
		live = prefault.Make[uint64](0, len(c.socks))
	}
	for i := range c.socks {
		s := &c.socks[i]
		p := s.Local.Port()
		inP := pool.has(p)
		switch s.State {
		case rules.Bound:
			cen.boundOnly++
		case rules.TimeWait:
			cen.timeWait++
		}
		if inP && used.addNew(p) {
			cen.inUse++
		}
		// A holder is one with ports of the pool or bound-only
		// sockets: what the lists rank.
		if s.State != rules.TimeWait && (inP || s.State == rules.Bound) {
			cen.holders.hold(holderKey{uid: s.UID}, "", p, inP, s.State == rules.Bound)
			if c.owners != nil {
				for _, o := range c.owners[i] {
					cen.holders.hold(holderKey{uid: s.UID, pid: o.PID}, o.Comm, p, inP, s.State == rules.Bound)
				}
			}
		}
		if (s.State != rules.Connected && s.State != rules.TimeWait) || !s.Remote.IsValid() || listening.has(p) {
			continue
		}
		k := destKey{src: s.Local.Addr().Unmap(), dest: netip.AddrPortFrom(s.Remote.Addr().Unmap(), s.Remote.Port())}
		// Connections to one destination mostly come together: the
		// last one's is compared before the index is hashed.
		d := lastDest
		if d < 0 || k != cen.keys[d] {
			var ok bool
			if d, ok = index[k]; !ok {
				d = len(cen.keys)
				index[k] = d
				cen.keys = append(cen.keys, k)
				cen.dests = append(cen.dests, destAcc{})
			}
			lastDest = d
		}
		if s.State == rules.Connected {
			if inP {
				live = append(live, uint64(d)<<16|uint64(p))
			}
			continue
		}
		acc := &cen.dests[d]
		acc.tw++
		if c.timeLeft != nil {
			if left := c.timeLeft[i]; left > 0 && (acc.nextExpry == 0 || left < acc.nextExpry) {
				acc.nextExpry = left
			}
		}
	}
	// Ports in use per destination: distinct (destination, port) pairs.
	slices.Sort(live)
	for i, v := range live {
		if i == 0 || v != live[i-1] {
			cen.dests[v>>16].live++
		}
	}
	return cen
}

// targets are the model's connect() searches: index 0 is a destination
// nobody talks to yet, then the census's destinations in order.
func (cen *census) targets() []rules.Dest {
	t := make([]rules.Dest, 1, len(cen.keys)+1)
	for _, k := range cen.keys {
		t = append(t, rules.Dest{Source: k.src, Peer: k.dest})
	}
	return t
}

// searched is the outcome of the model's searches for a new socket:
// connect() per target under both settlements of the unknowns, and bind(0).
type searched struct {
	pool     int // ports one connect() search visits
	oddLoss  int // ports the lower bounds lose to an odd-sized range
	lo, hi   []rules.PortCount
	bindFree int
	// socketRange is the new socket's own range; newSock is the socket
	// whose connect() is searched per target.
	socketRange inet.PortRange
	newSock     rules.Socket
}

// searchPool finds the size of connect()'s pool on host, and which socket
// the searches per target are made for.
func searchPool(host rules.Host, socketRange, rng inet.PortRange, perSocket bool) searched {
	s := searched{socketRange: socketRange, newSock: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, PortRange: socketRange}}
	s.pool = rules.ConnectSearched(host, s.newSock)
	// Over an odd-sized range connect() visits one port fewer than the
	// range holds (ConnectPool), and which one it leaves out depends on its
	// random start (the model leaves out the top one). The free counts are
	// then taken over every port, as a socket with its own range searches,
	// and the lower bound loses the one port.
	if !perSocket {
		every := s.newSock
		every.PortRange = rng
		if all := rules.ConnectSearched(host, every); all > s.pool {
			s.oddLoss = all - s.pool
			s.newSock = every
		}
	}
	return s
}

// bindSearch starts bind(0)'s search over lo on another goroutine and
// returns a function that waits for it to set s.bindFree.
func (s *searched) bindSearch(lo *rules.Model) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		bind := lo.Predict(rules.Socket{Proto: inet.TCP, Family: inet.IPv4, PortRange: s.socketRange},
			rules.Op{Kind: rules.OpBind, Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), 0)})
		s.bindFree = max(bind.Candidates, 0)
	}()
	return func() { <-done }
}

// perTarget runs connect()'s search for every target over lo and hi, side
// by side.
func (s *searched) perTarget(lo, hi *rules.Model, targets []rules.Dest) {
	var wg sync.WaitGroup
	if hi != lo {
		wg.Go(func() { s.hi = hi.ConnectPortsMany(s.newSock, targets) })
	}
	s.lo = lo.ConnectPortsMany(s.newSock, targets)
	wg.Wait()
	if hi == lo {
		s.hi = s.lo
	}
}

// free is target i's free ports, lower and upper bound, within the pool.
func (s *searched) free(i int) (lo, hi int) {
	clamp := func(n int) int { return max(0, min(n, s.pool)) }
	return clamp(s.lo[i].Candidates() - s.oddLoss), clamp(s.hi[i].Candidates())
}

// destinations appends the census's destinations with their free counts
// to out, fewest free first.
func destinations(cen census, s searched, out []Destination) []Destination {
	for i, k := range cen.keys {
		d := &cen.dests[i]
		dst := Destination{
			Source: k.src, Dest: k.dest,
			InUse: d.live, TimeWait: d.tw, TimeWaitReusable: s.lo[i+1].TimeWait,
			NextExpiry: d.nextExpry, NextExpirySeconds: d.nextExpry.Seconds(),
		}
		dst.FreeMin, dst.FreeMax = s.free(i + 1)
		if s.pool > 0 {
			dst.Use = 1 - float64(dst.FreeMax)/float64(s.pool)
		}
		out = append(out, dst)
	}
	slices.SortFunc(out, func(a, b Destination) int {
		return cmp.Or(cmp.Compare(a.FreeMin, b.FreeMin), cmp.Compare(b.InUse, a.InUse),
			a.Source.Compare(b.Source), a.Dest.Compare(b.Dest))
	})
	return out
}

// poolOf is the ports connect() and bind(0) may pick: rng less the
// reserved ports.
func poolOf(rng inet.PortRange, reserved []inet.PortRange) portSet {
	var pool portSet
	for p := int(rng.Lo); p <= int(rng.Hi) && rng.Size() > 0; p++ {
		pool.add(uint16(p))
	}
	for _, r := range reserved {
		for p := int(r.Lo); p <= int(r.Hi); p++ {
			s := &pool[p/64]
			*s &^= 1 << (p % 64)
		}
	}
	return pool
}

// holderKey is a uid (pid 0) or one process of it.
type holderKey struct {
	uid uint32
	pid int
}

// holderTally counts the distinct pool ports and the bound-only sockets
// each uid and each process holds. A table lists a process's sockets
// together, mostly: the last uid and the last process counted are looked
// for first.
type holderTally struct {
	byKey   map[holderKey]*holderAcc
	lastKey [2]holderKey // a uid's, a process's
	last    [2]*holderAcc
}

type holderAcc struct {
	Holder
	ports portSet
}

// hold counts port p (in the pool when inP) for k, whose command is comm.
func (t *holderTally) hold(k holderKey, comm string, p uint16, inP, boundOnly bool) {
	kind := min(k.pid, 1)
	h := t.last[kind]
	if h == nil || k != t.lastKey[kind] {
		if h = t.byKey[k]; h == nil {
			h = &holderAcc{Holder: Holder{UID: k.uid, PID: k.pid, Comm: comm}}
			t.byKey[k] = h
		}
		t.lastKey[kind], t.last[kind] = k, h
	}
	if boundOnly {
		h.BoundOnly++
	}
	if inP && h.ports.addNew(p) {
		h.Ports++
	}
}

// lists appends the uids and the processes to uids and procs, each with
// its share of a pool of pool ports, most ports first.
func (t *holderTally) lists(uids, procs []Holder, pool int) ([]Holder, []Holder) {
	for k, h := range t.byKey {
		if pool > 0 {
			h.Share = float64(h.Ports) / float64(pool)
		}
		if k.pid == 0 {
			uids = append(uids, h.Holder)
		} else {
			procs = append(procs, h.Holder)
		}
	}
	byPorts := func(a, b Holder) int {
		return cmp.Or(cmp.Compare(b.Ports, a.Ports), cmp.Compare(b.BoundOnly, a.BoundOnly),
			cmp.Compare(a.UID, b.UID), cmp.Compare(a.PID, b.PID))
	}
	slices.SortFunc(uids, byPorts)
	slices.SortFunc(procs, byPorts)
	return uids, procs
}

// models indexes socks for the rules model: lo with every unknown port
// origin and TIME_WAIT timestamp settled against a new connect() (the port
// was bind()-held, the peer sent no timestamps), hi settled for it. Without
// unknowns they are one model over socks as they are; with them lo is
// socks settled in place and hi a settled copy.
func models(socks []rules.Socket, host rules.Host, buckets []rules.Bucket, unknown bool, keep *kept) (lo, hi *rules.Model) {
	world := func(s []rules.Socket) rules.World { return rules.World{Host: host, Sockets: s, Buckets: buckets} }
	if unknown {
		optimistic := slices.Clone(socks)
		settle(optimistic, true)
		settle(socks, false)
		hi = rules.NewModel(world(optimistic))
	}
	if keep != nil {
		lo = keep.model.Reindex(world(socks))
	} else {
		lo = rules.NewModel(world(socks))
	}
	if hi == nil {
		hi = lo
	}
	return lo, hi
}

// hasUnknown reports whether some socket's port origin or TIME_WAIT
// timestamps are unknown.
func hasUnknown(socks []rules.Socket) bool {
	for i := range socks {
		if socks[i].Unknown&(rules.FactPortOrigin|rules.FactTimestamps) != 0 {
			return true
		}
	}
	return false
}

// settle decides every unknown port origin and TIME_WAIT timestamp of
// socks: for a new connect() (optimistic) or against it.
func settle(socks []rules.Socket, optimistic bool) {
	for i := range socks {
		s := &socks[i]
		if s.Unknown&rules.FactPortOrigin != 0 {
			s.PortFromConnect = optimistic
		}
		if s.Unknown&rules.FactTimestamps != 0 {
			s.TWTimestamps = optimistic
		}
		s.Unknown &^= rules.FactPortOrigin | rules.FactTimestamps
	}
}

func warnings(rep Report, share float64) []string {
	w := []string{}
	for _, h := range rep.UIDs {
		if h.Share > share {
			w = append(w, fmt.Sprintf("uid %d holds %d of %d ephemeral ports (%.0f%%, over %.0f%%); %d of its sockets are bound without listen() or connect()",
				h.UID, h.Ports, rep.Pool, 100*h.Share, 100*share, h.BoundOnly))
		}
	}
	if rep.ConnectPool > 0 && rep.ConnectFreeMin < rep.ConnectPool/10 {
		w = append(w, fmt.Sprintf("only %d..%d of %d ports left for connect() to a new destination: %d ports are held by bind()/listen() owners",
			rep.ConnectFreeMin, rep.ConnectFreeMax, rep.ConnectPool, rep.BindOwned))
	}
	for _, d := range rep.Destinations {
		if rep.ConnectPool > 0 && d.FreeMin < rep.ConnectPool/10 {
			w = append(w, fmt.Sprintf("%s -> %s: only %d..%d of %d ports left for connect()", d.Source, d.Dest, d.FreeMin, d.FreeMax, rep.ConnectPool))
		}
	}
	if rep.UnknownOrigin > 0 {
		w = append(w, fmt.Sprintf("%d ports are held by connected sockets whose port may come from bind() or connect(): free counts are ranges", rep.UnknownOrigin))
	}
	return w
}

func popcount(x uint64) int { return bits.OnesCount64(x) }
