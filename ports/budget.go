package ports

import (
	"cmp"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"time"

	"github.com/tuple-net/tuple/inet"
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
}

// Report is the ephemeral-port budget of one namespace.
type Report struct {
	Range    inet.PortRange   `json:"range"`    // net.ipv4.ip_local_port_range (narrowed by Options.SocketRange)
	Reserved []inet.PortRange `json:"reserved"` // net.ipv4.ip_local_reserved_ports
	// Pool is the number of ports an autobind may take: Range minus the
	// reserved ports.
	Pool int `json:"pool"`
	// ConnectPool is how many of them one connect() search visits: the
	// kernel scans an even count of ports when no per-socket range is set,
	// so with an odd-sized range one port is skipped.
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
	UIDs         []Holder      `json:"uids"`         // most ports first
	Processes    []Holder      `json:"processes"`    // most ports first
	Warnings     []string      `json:"warnings"`
}

// Destination is the budget of new connect()s from one source address to
// one destination.
type Destination struct {
	Source netip.Addr     `json:"source"`
	Dest   netip.AddrPort `json:"dest"`
	// InUse: ports of the pool used by live sockets with this four-tuple.
	InUse int `json:"in_use"`
	// TimeWait: TIME_WAIT entries with this source and destination, and
	// how many of them a new connect() may take over now.
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

// portSet is a set of ports; the budget works on bitmaps of the whole port
// space so a table of any size costs the same to intersect.
type portSet [65536 / 64]uint64

func (s *portSet) add(p uint16)         { s[p/64] |= 1 << (p % 64) }
func (s *portSet) has(p uint16) bool    { return s[p/64]&(1<<(p%64)) != 0 }
func (s *portSet) addNew(p uint16) bool { n := !s.has(p); s.add(p); return n }

type destKey struct {
	src  netip.Addr
	dest netip.AddrPort
}

type destAcc struct {
	live      map[uint16]bool // ports with a live socket on the four-tuple
	twBlock   map[uint16]bool // TIME_WAIT four-tuples that block for sure
	twMaybe   map[uint16]bool // TIME_WAIT four-tuples that block unless the peer used timestamps
	tw, twOK  int
	nextExpry time.Duration
}

// Budget computes the report for TCP sockets entries in a namespace with
// host's settings. UDP entries are ignored. It does not modify entries.
func Budget(entries []Entry, host rules.Host, opt Options) Report {
	share := opt.HogShare
	if share <= 0 {
		share = 0.5
	}
	rng, perSocket := rules.EffectiveRange(host, rules.Socket{PortRange: opt.SocketRange})
	// Empty lists rather than nil, so JSON shows [] and not null.
	rep := Report{Range: rng, Reserved: append([]inet.PortRange{}, host.ReservedPorts...),
		Destinations: []Destination{}, UIDs: []Holder{}, Processes: []Holder{}, Warnings: []string{}}

	inPool := func(p uint16) bool {
		if !rng.Contains(p) {
			return false
		}
		for _, r := range host.ReservedPorts {
			if r.Contains(p) {
				return false
			}
		}
		return true
	}
	for p := int(rng.Lo); p <= int(rng.Hi) && rng.Size() > 0; p++ {
		if inPool(uint16(p)) {
			rep.Pool++
		}
	}
	rep.ConnectPool = rep.Pool
	oddSkip := !perSocket && rng.Size() > 1 && rng.Size()%2 == 1
	if oddSkip && rep.ConnectPool > 0 {
		rep.ConnectPool--
	}

	// Listening ports tell accepted children (same local port as a
	// listener) apart from outgoing connections.
	var listening portSet
	for _, e := range entries {
		if e.Socket.Proto == inet.TCP && e.Socket.State == rules.Listen {
			listening.add(e.Socket.Local.Port())
		}
	}

	var used, bindOwned, unknown, bindBlocked portSet
	dests := map[destKey]*destAcc{}
	type holderKey struct {
		uid uint32
		pid int
	}
	holders := map[holderKey]*Holder{}
	holderPorts := map[holderKey]*portSet{}
	hold := func(k holderKey, comm string, p uint16, inP, boundOnly bool) {
		h := holders[k]
		if h == nil {
			h = &Holder{UID: k.uid, PID: k.pid, Comm: comm}
			holders[k] = h
			holderPorts[k] = new(portSet)
		}
		if boundOnly {
			h.BoundOnly++
		}
		if inP && holderPorts[k].addNew(p) {
			h.Ports++
		}
	}

	for _, e := range entries {
		s := e.Socket
		if s.Proto != inet.TCP || s.State == rules.Unbound || s.Local.Port() == 0 {
			continue
		}
		p := s.Local.Port()
		inP := inPool(p)
		if s.State == rules.Bound {
			rep.BoundOnly++
		}
		if s.State == rules.TimeWait {
			rep.TimeWait++
		}
		if inP {
			if used.addNew(p) {
				rep.InUse++
			}
			// Every owner blocks bind(0) to the wildcard except a
			// v6only socket on a specific IPv6 address.
			if !(s.Family == inet.IPv6 && s.V6Only && !s.Local.Addr().Is4In6() && !s.Local.Addr().IsUnspecified()) {
				bindBlocked.add(p)
			}
			child := s.State != rules.Bound && s.State != rules.Listen && listening.has(p)
			switch {
			case s.State == rules.Bound || s.State == rules.Listen || child:
				bindOwned.add(p)
			case s.Unknown&rules.FactPortOrigin != 0:
				unknown.add(p)
			case !s.PortFromConnect:
				bindOwned.add(p)
			}
		}
		if s.State != rules.TimeWait {
			hold(holderKey{uid: s.UID}, "", p, inP, s.State == rules.Bound)
			for _, o := range e.Owners {
				hold(holderKey{uid: s.UID, pid: o.PID}, o.Comm, p, inP, s.State == rules.Bound)
			}
		}

		if (s.State != rules.Connected && s.State != rules.TimeWait) || !s.Remote.IsValid() || listening.has(p) {
			continue
		}
		k := destKey{src: s.Local.Addr().Unmap(), dest: netip.AddrPortFrom(s.Remote.Addr().Unmap(), s.Remote.Port())}
		d := dests[k]
		if d == nil {
			d = &destAcc{live: map[uint16]bool{}, twBlock: map[uint16]bool{}, twMaybe: map[uint16]bool{}}
			dests[k] = d
		}
		if s.State == rules.Connected {
			if inP {
				d.live[p] = true
			}
			continue
		}
		d.tw++
		if e.TimeLeft > 0 && (d.nextExpry == 0 || e.TimeLeft < d.nextExpry) {
			d.nextExpry = e.TimeLeft
		}
		switch twReuse(host, k, s, e.TimeLeft) {
		case twReusable:
			d.twOK++
		case twMaybe:
			if inP {
				d.twMaybe[p] = true
			}
		default:
			if inP {
				d.twBlock[p] = true
			}
		}
	}

	var nBind, nUnknownOnly int
	for i := range bindOwned {
		nBind += popcount(bindOwned[i])
		nUnknownOnly += popcount(unknown[i] &^ bindOwned[i])
	}
	rep.BindOwned, rep.UnknownOrigin = nBind, nUnknownOnly
	for i := range bindBlocked {
		rep.BindFree -= popcount(bindBlocked[i])
	}
	rep.BindFree += rep.Pool

	clampFree := func(n int) int { return max(0, min(n, rep.ConnectPool)) }
	// With an odd-sized range the kernel visits one port fewer than the
	// range holds ("remaining &= ~1"), and which port it skips depends on the
	// random start, so the lower bound loses one port.
	oddLoss := 0
	if oddSkip {
		oddLoss = 1
	}
	rep.ConnectFreeMax = clampFree(rep.Pool - nBind)
	rep.ConnectFreeMin = clampFree(rep.Pool - nBind - nUnknownOnly - oddLoss)

	for k, d := range dests {
		var extraMax, extraMin int
		seen := map[uint16]bool{}
		for _, m := range []map[uint16]bool{d.live, d.twBlock, d.twMaybe} {
			for p := range m {
				if seen[p] || bindOwned.has(p) {
					continue
				}
				seen[p] = true
				if !unknown.has(p) {
					extraMin++
				}
				if d.live[p] || d.twBlock[p] {
					extraMax++
				}
			}
		}
		dst := Destination{
			Source: k.src, Dest: k.dest,
			InUse: len(d.live), TimeWait: d.tw, TimeWaitReusable: d.twOK,
			NextExpiry: d.nextExpry, NextExpirySeconds: d.nextExpry.Seconds(),
			FreeMax: clampFree(rep.Pool - nBind - extraMax),
			FreeMin: clampFree(rep.Pool - nBind - nUnknownOnly - extraMin - oddLoss),
		}
		if rep.ConnectPool > 0 {
			dst.Use = 1 - float64(dst.FreeMax)/float64(rep.ConnectPool)
		}
		rep.Destinations = append(rep.Destinations, dst)
	}
	slices.SortFunc(rep.Destinations, func(a, b Destination) int {
		return cmp.Or(cmp.Compare(a.FreeMin, b.FreeMin), cmp.Compare(b.InUse, a.InUse),
			a.Source.Compare(b.Source), a.Dest.Compare(b.Dest))
	})

	for k, h := range holders {
		if rep.Pool > 0 {
			h.Share = float64(h.Ports) / float64(rep.Pool)
		}
		if k.pid == 0 {
			rep.UIDs = append(rep.UIDs, *h)
		} else {
			rep.Processes = append(rep.Processes, *h)
		}
	}
	byPorts := func(a, b Holder) int {
		return cmp.Or(cmp.Compare(b.Ports, a.Ports), cmp.Compare(b.BoundOnly, a.BoundOnly),
			cmp.Compare(a.UID, b.UID), cmp.Compare(a.PID, b.PID))
	}
	slices.SortFunc(rep.UIDs, byPorts)
	slices.SortFunc(rep.Processes, byPorts)

	rep.Warnings = warnings(rep, share)
	return rep
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

type twVerdict int

const (
	twBlocks twVerdict = iota
	twMaybe
	twReusable
)

// twReuse says whether a new connect() may take over the TIME_WAIT entry s
// on destination k: tcp_tw_reuse 1 (or 2 when either address is loopback), the peer used
// timestamps, and tcp_tw_reuse_delay has passed since the entry was made.
func twReuse(host rules.Host, k destKey, s rules.Socket, left time.Duration) twVerdict {
	on := host.TCPTWReuse == 1 || (host.TCPTWReuse == 2 && (k.src.IsLoopback() || k.dest.Addr().IsLoopback()))
	if !on {
		return twBlocks
	}
	age := s.TWAge
	if left > 0 {
		age = TimeWaitLength - left
	}
	if age <= host.TWReuseDelay {
		return twBlocks
	}
	if s.Unknown&rules.FactTimestamps != 0 {
		return twMaybe
	}
	if s.TWTimestamps {
		return twReusable
	}
	return twBlocks
}

func popcount(x uint64) int { return bits.OnesCount64(x) }
