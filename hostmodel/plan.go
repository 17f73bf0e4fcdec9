package hostmodel

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
)

// Plan is what the new socket does, in order: for example bind then listen,
// or bind then connect. The socket is described as created (Unbound).
type Plan struct {
	Socket rules.Socket
	Ops    []rules.Op
	// routeByPort is set by ResolveSource when the route lookup of the
	// connect() depends on the port it picks (ip rule sport).
	routeByPort *byPort
}

// Result is a plan's predicted outcome: the outcome of the first operation
// that fails, or of the last one.
type Result struct {
	rules.Outcome
	Failed int // index of the failing operation in Plan.Ops, -1 when all succeed
	// StandIn is the port a bind(0) followed by another operation was
	// given for judging that operation, 0 for none: the kernel takes one
	// of several ports at random, so After's port is one it may take, not
	// the one it will (an assumption of the outcome says so).
	StandIn uint16
}

// Model predicts one operation; rules.Predict is the model. Tests may
// substitute a smaller one.
type Model func(w rules.World, s rules.Socket, op rules.Op) rules.Outcome

// Predict runs the plan through model (rules.Predict when nil), each
// operation starting from the socket the previous one left.
func Predict(model Model, w rules.World, p Plan) Result {
	if model == nil {
		return run(rules.NewModel(w).Predict, w.Host, p)
	}
	return run(func(s rules.Socket, op rules.Op) rules.Outcome { return model(w, s, op) }, w.Host, p)
}

func run(predict func(rules.Socket, rules.Op) rules.Outcome, host rules.Host, p Plan) Result {
	s := p.Socket
	var out rules.Outcome
	var standIn uint16
	var candidates int
	result := func(failed int) Result {
		judged := failed // the last operation judged
		if judged < 0 {
			judged = len(p.Ops) - 1
		}
		if p.routeByPort != nil && judged >= 0 && p.Ops[judged].Kind == rules.OpConnect {
			out.Assumptions = append(slices.Clone(out.Assumptions), p.routeByPort.assumption())
		}
		if standIn != 0 {
			out.Assumptions = append(slices.Clone(out.Assumptions), fmt.Sprintf(
				"bind(0) takes one of %d free ports, starting at a random one; the next operation was judged with port %d, one it may take", candidates, standIn))
		}
		return Result{Outcome: out, Failed: failed, StandIn: standIn}
	}
	for i, op := range p.Ops {
		out = predict(s, op)
		if !out.OK() {
			return result(i)
		}
		s = out.After
		if i+1 < len(p.Ops) && op.Kind == rules.OpBind && op.Addr.Port() == 0 && s.Local.Port() == 0 && !s.BindNoPort {
			// bind(0) took one of several ports and the model cannot say
			// which (the kernel starts at a random one); the next
			// operation is judged with one of them.
			if port, ok := pickBoundPort(predict, host, p.Socket, op); ok {
				s.Local = netip.AddrPortFrom(s.Local.Addr(), port)
				standIn, candidates = port, out.Candidates
			}
		}
	}
	return result(-1)
}

// pickBoundPort returns a port bind(op.Addr with port 0) may have taken:
// the first in the search range that an explicit bind without reuse options
// accepts (the kernel's first pass takes only ports without an overlapping
// owner), else the first an explicit bind with the socket's options
// accepts (ip_autobind_reuse's second pass shares such ports).
func pickBoundPort(predict func(rules.Socket, rules.Op) rules.Outcome, host rules.Host, s rules.Socket, op rules.Op) (uint16, bool) {
	r, _ := rules.EffectiveRange(host, s)
	reserved := func(p uint16) bool {
		for _, rr := range host.ReservedPorts {
			if rr.Contains(p) {
				return true
			}
		}
		return false
	}
	strict := s
	strict.ReuseAddr, strict.ReusePort = false, false
	for _, try := range []rules.Socket{strict, s} {
		for p := int(r.Lo); p <= int(r.Hi) && p > 0; p++ {
			if reserved(uint16(p)) {
				continue
			}
			if predict(try, rules.Op{Kind: rules.OpBind, Addr: netip.AddrPortFrom(op.Addr.Addr(), uint16(p))}).OK() {
				return uint16(p), true
			}
		}
	}
	return 0, false
}

// predict runs p against the situation's world, or against w when it is
// not nil (a world changed by a candidate fix). The situation's own world
// is indexed once (rules.NewModel) and reused, so trying many ports or
// addresses stays cheap on a large table. Where the verdict rests on the
// order of a UDP port's IPv4 and IPv6 sockets, which no table shows, the
// result says so (udpOrderAssumption).
func (sit *Situation) predict(w *rules.World, p Plan) Result {
	if sit.Model != nil {
		if w == nil {
			return Predict(sit.Model, sit.World(), p)
		}
		return Predict(sit.Model, *w, p)
	}
	var res Result
	if w != nil {
		res = Predict(nil, *w, p)
	} else {
		if sit.indexed == nil {
			sit.indexed = rules.NewModel(sit.World())
		}
		res = run(sit.indexed.Predict, sit.Host, p)
	}
	if sit.udpMixedPorts == nil {
		sit.udpMixedPorts = udpMixedPorts(sit.Entries)
	}
	sit.udpOrderAssumption(w, p, &res)
	return res
}

// String describes the plan as the syscalls it makes: "bind 127.0.0.1:80,
// listen".
func (p Plan) String() string {
	s := ""
	for i, op := range p.Ops {
		if i > 0 {
			s += ", "
		}
		switch op.Kind {
		case rules.OpListen:
			s += "listen"
		default:
			s += fmt.Sprintf("%s %s", op.Kind, op.Addr)
		}
	}
	return s
}

// ResolveSource fills in Op.Source of the plan's connect with the address
// the kernel's route lookup would give it, when the socket is not bound to
// a specific address, or Op.RouteErr when the lookup fails as connect()
// then would (routeErrnos). Any other failure of the lookup is returned.
// It runs in the calling thread's network namespace.
func ResolveSource(p *Plan) error {
	// What the plan binds first: its address only when a specific one.
	var bound netip.AddrPort
	portAtBind := false
	dev := p.Socket.Dev
	for i := range p.Ops {
		op := &p.Ops[i]
		switch op.Kind {
		case rules.OpBind:
			bound = op.Addr
			portAtBind = !p.Socket.BindNoPort
			if op.Addr.Addr().Unmap().IsUnspecified() {
				bound = netip.AddrPortFrom(netip.Addr{}, op.Addr.Port())
			}
			if d := rules.ZoneDev(bound.Addr()); d != 0 && rules.NeedsScope(bound.Addr()) {
				dev = d // the scope becomes the socket's device
			}
		case rules.OpConnect:
			// The route is looked up from the bound address and port
			// to the peer's port, for the socket's owner and mark, as
			// the kernel does (policy routing may choose by any of
			// them: ip rule from, sport, dport, uidrange, fwmark); a
			// fix that binds another address or port, or runs as
			// another user, looks again (rerouted).
			op.Source, op.RouteErr, op.RouteFrom, p.routeByPort = netip.Addr{}, 0, netip.AddrPort{}, nil
			lookup := udpSourceFor
			if p.Socket.Proto == inet.TCP {
				lookup = tcpSourceFor
			}
			src, err := lookup(op.Addr, bound, routeSocket{dev: dev, uid: p.Socket.UID, mark: p.Socket.Mark, portAtBind: portAtBind})
			if bp := (*byPort)(nil); errors.As(err, &bp) {
				p.routeByPort, err = bp, bp.err
			}
			if errno := syscall.Errno(0); errors.As(err, &errno) && routeErrno(op.Addr.Addr(), errno) {
				op.RouteErr = errno
				var from *lookupFrom
				if errors.As(err, &from) {
					op.RouteFrom = from.src
				}
				continue
			}
			if bound.Addr().IsValid() {
				continue
			}
			if err != nil {
				return fmt.Errorf("no source address for %s: %w", op.Addr.Addr(), err)
			}
			if p.Socket.Family == inet.IPv6 && src.Is4() {
				src = netip.AddrFrom16(src.As16())
			}
			op.Source = src
		}
	}
	return nil
}

// routeSocket is the socket a route lookup is made for, beside its
// addresses and ports: its device (0: none), owner (sk_uid, which ip rule
// uidrange matches) and firewall mark (ip rule fwmark).
type routeSocket struct {
	dev  int
	uid  uint32
	mark uint32
	// portAtBind: the socket took its port at bind(), before connect()
	// looks the route up (a bind to port 0 without
	// IP_BIND_ADDRESS_NO_PORT), so every lookup has it.
	portAtBind bool
}

// byPort is a connect()'s route lookup that ends otherwise from the
// first port of the ephemeral range than from another (ip rule sport): its
// outcome depends on the port connect() picks. err is the first port's,
// with which the connect() is judged; other is the first port (of
// portClasses') whose lookup ends otherwise, and pass, when the judged
// lookup fails, a port from which it passes (0: none).
type byPort struct {
	rng      inet.PortRange
	judged   syscall.Errno // 0: the lookup passed
	other    uint16
	otherErr syscall.Errno
	pass     uint16
	err      error
}

func (e *byPort) Error() string { return e.assumption() }

func (e *byPort) assumption() string {
	word := func(errno syscall.Errno) string {
		if errno == 0 {
			return "passes"
		}
		return "fails (" + errno.Error() + ")"
	}
	return fmt.Sprintf("the route lookup %s from source port %d and %s from %d (policy routing by source port, ip rule sport): the outcome depends on the port connect() picks in %s; judged with %d",
		word(e.judged), e.rng.Lo, word(e.otherErr), e.other, e.rng, e.rng.Lo)
}

// caveat is what a fix that leaves the port to connect() must add when
// the route lookup fails from some of the ports it may pick ("" when not).
func (e *byPort) caveat() string {
	if e == nil || e.otherErr == 0 {
		return ""
	}
	return fmt.Sprintf("; but the route lookup fails (%v) from some of the ports it may pick, such as %d (ip rule sport)", e.otherErr, e.other)
}

// lookupErrno is the errno a route lookup failed with, 0 when it passed
// (or failed without one).
func lookupErrno(err error) syscall.Errno {
	var errno syscall.Errno
	errors.As(err, &errno)
	return errno
}

// lookupFrom is a failed route lookup with the source address and port it
// was made from: ResolveSource's lookups of a TCP connect() are not all
// made from the socket's own.
type lookupFrom struct {
	src netip.AddrPort
	err error
}

func (e *lookupFrom) Error() string { return e.err.Error() }
func (e *lookupFrom) Unwrap() error { return e.err }

// routeErrno reports whether a route lookup for peer that failed with
// errno is what connect() to peer fails with: no route (ENETUNREACH), an
// unreachable route (EHOSTUNREACH; ENETUNREACH for an unreachable rule),
// a prohibit one (EACCES), a blackhole (EINVAL; for a link-local peer
// EINVAL is its missing scope, which the model judges itself).
func routeErrno(peer netip.Addr, errno syscall.Errno) bool {
	switch errno {
	case syscall.ENETUNREACH, syscall.EHOSTUNREACH, syscall.EACCES:
		return true
	case syscall.EINVAL:
		return !rules.NeedsScope(peer)
	}
	return false
}
