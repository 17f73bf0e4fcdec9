package hostmodel

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/sockopt"
)

// maxPortTries bounds the model runs spent looking for a free port or
// address, so a fix search on a table of 40,000 sockets stays quick.
const maxPortTries = 64

// maxBoundaries is how many boundaries of the source-port rules' classes
// portFix tries on each side of a port whose route fails, before (and
// beside) its maxPortTries nearest ports.
const maxBoundaries = 8

// Fixes returns the changes the model predicts would make p succeed, given
// that it fails with res. Each candidate is run through the model; only
// those that succeed are returned, in the order a person would try them.
func Fixes(sit *Situation, p Plan, res Result) []Fix {
	var out []Fix
	add := func(f Fix, ok bool) {
		if ok && !slices.ContainsFunc(out, func(o Fix) bool { return o.Change == f.Change && o.Edit.equal(f.Edit) }) {
			out = append(out, f)
		}
	}
	add(waitFix(sit, p, res))
	add(shareFix(sit, p, res, sockopt.ReusePort, func(s *rules.Socket) *bool { return &s.ReusePort }))
	add(shareFix(sit, p, res, sockopt.ReuseAddr, func(s *rules.Socket) *bool { return &s.ReuseAddr }))
	add(noSourcePortFix(sit, p))
	add(portFix(sit, p))
	add(routePortFix(sit, p))
	add(addressFix(sit, p))
	add(rangeFix(sit, p, res))
	add(socketFix(sit, p, "set IP_FREEBIND on the new socket to bind an address that is not (yet) local",
		func(s *rules.Socket) { s.Freebind = true }))
	add(socketFix(sit, p, "run with CAP_NET_BIND_SERVICE (or as root) to bind a port below net.ipv4.ip_unprivileged_port_start",
		func(s *rules.Socket) { s.CanBindPrivileged = true }))
	return out
}

// succeeds runs a changed plan against a changed world: it must succeed
// whichever order a UDP port's IPv4 and IPv6 sockets bound in.
func succeeds(sit *Situation, w *rules.World, p Plan) bool {
	r := sit.predict(w, p)
	return r.OK() && !r.RestsOnUDPOrder()
}

// waitFix: when every blocker is a TIME_WAIT entry, the plan works once the
// last of them expires.
func waitFix(sit *Situation, p Plan, res Result) (Fix, bool) {
	if len(res.Blockers) == 0 {
		return Fix{}, false
	}
	var left time.Duration
	drop := map[int]bool{}
	for _, b := range res.Blockers {
		if b.Socket.State != rules.TimeWait || b.Index < 0 || b.Index >= len(sit.Entries) {
			return Fix{}, false
		}
		drop[b.Index] = true
		left = max(left, sit.Entries[b.Index].TimeLeft)
	}
	w := sit.World()
	w.Sockets = without(w.Sockets, drop)
	if !succeeds(sit, &w, p) {
		return Fix{}, false
	}
	n := "the TIME_WAIT entry expires"
	if len(drop) > 1 {
		n = fmt.Sprintf("the %d TIME_WAIT entries expire", len(drop))
	}
	secs := int((left + time.Second - 1) / time.Second)
	return Fix{Change: fmt.Sprintf("wait %d s until %s", secs, n)}, true
}

func without(socks []rules.Socket, drop map[int]bool) []rules.Socket {
	out := make([]rules.Socket, 0, len(socks))
	for i, s := range socks {
		if !drop[i] {
			out = append(out, s)
		}
	}
	return out
}

// shareFix sets a reuse option on the new socket and, where the model then
// names them as blockers, on the existing sockets too (their owners must
// set it when they create them). When the option needs the same uid
// (SO_REUSEPORT), it also tries the blockers' uid. TIME_WAIT entries keep the
// flags their socket had and cannot be changed, so a fix that needs them
// changed is not offered.
func shareFix(sit *Situation, p Plan, res Result, id sockopt.ID, opt func(*rules.Socket) *bool) (Fix, bool) {
	if res.OK() || len(res.Blockers) == 0 {
		return Fix{}, false
	}
	name := id.String()
	fact := rules.FactReuseAddr
	if id == sockopt.ReusePort {
		fact = rules.FactReusePort
	}
	if changed, ok := tryShare(sit, p, opt, nil); ok {
		f := newFix("set "+name+" on the new socket", Edit{Options: []sockopt.ID{id}})
		if len(changed) > 0 {
			prog := " (its program must set it before bind)"
			if len(changed) > 1 {
				prog = " (their programs must set it before bind)"
			}
			f.Change += " and on " + ownersOf(sit, changed) + prog + unreadNote(sit, changed, fact)
			f.others = true
		}
		return f, true
	}
	// SO_REUSEPORT between different users: same uid needed. SO_REUSEADDR
	// knows no uid: where running as the owner helps, SO_REUSEPORT's fix
	// says so.
	if id != sockopt.ReusePort {
		return Fix{}, false
	}
	uid, same := blockersUID(res)
	if !same || uid == p.Socket.UID {
		return Fix{}, false
	}
	if changed, ok := tryShare(sit, p, opt, &uid); ok {
		f := newFix(fmt.Sprintf("set %s on the new socket and run it as uid %d, the owner's (%s shares a port only between sockets of one user)", name, uid, name),
			Edit{Options: []sockopt.ID{id}, SetUID: true, UID: uid})
		if len(changed) > 0 {
			f.Change += "; also set it on " + ownersOf(sit, changed) + unreadNote(sit, changed, fact)
			f.others = true
		}
		return f, true
	}
	return Fix{}, false
}

// tryShare sets the option on the plan's socket (run as uid when not nil)
// and on each blocker the model then names, a few rounds, until the plan
// succeeds. It returns the indexes of the existing sockets it changed, or
// false when no such change lets the plan succeed (a blocker in TIME_WAIT,
// or one that stays a blocker).
func tryShare(sit *Situation, p Plan, opt func(*rules.Socket) *bool, uid *uint32) (changed []int, ok bool) {
	w := sit.World()
	w.Sockets = slices.Clone(w.Sockets)
	np := p
	*opt(&np.Socket) = true
	if uid != nil {
		np.Socket.UID = *uid
	}
	for range 4 {
		r := sit.predict(&w, np)
		if r.OK() && !r.RestsOnUDPOrder() {
			return changed, true
		}
		progress := false
		for _, b := range r.Blockers {
			if b.Index < 0 || b.Index >= len(w.Sockets) {
				return nil, false
			}
			s := &w.Sockets[b.Index]
			if *opt(s) {
				continue
			}
			if s.State == rules.TimeWait {
				return nil, false
			}
			*opt(s) = true
			changed = append(changed, b.Index)
			progress = true
		}
		if !progress {
			return nil, false
		}
	}
	return nil, false
}

// unreadNote qualifies a fix when a changed socket's option was assumed
// off, not read.
func unreadNote(sit *Situation, changed []int, fact rules.Fact) string {
	for _, i := range changed {
		if sit.Entries[i].Socket.Unknown&fact != 0 {
			return " (unless they have it already: their options are unread)"
		}
	}
	return ""
}

func blockersUID(res Result) (uint32, bool) {
	var uid uint32
	for i, b := range res.Blockers {
		if b.Socket.State == rules.TimeWait {
			continue
		}
		if i > 0 && b.Socket.UID != uid {
			return 0, false
		}
		uid = b.Socket.UID
	}
	return uid, true
}

// bindIndex is the index of the plan's explicit bind, or -1.
func bindIndex(p Plan) int {
	return slices.IndexFunc(p.Ops, func(op rules.Op) bool { return op.Kind == rules.OpBind })
}

// noSourcePortFix: a connect() that binds a fixed source port first can
// instead let connect() pick the port (dropping the bind, or binding the
// address only with IP_BIND_ADDRESS_NO_PORT).
func noSourcePortFix(sit *Situation, p Plan) (Fix, bool) {
	bi := bindIndex(p)
	if bi < 0 || p.Ops[len(p.Ops)-1].Kind != rules.OpConnect {
		return Fix{}, false
	}

	from := p.Ops[bi].Addr
	if !from.Addr().IsUnspecified() {
		np := clonePlan(p)
		np.Ops[bi].Addr = netip.AddrPortFrom(from.Addr(), 0)
		np.Socket.BindNoPort = true
		if np = rerouted(p, np); succeeds(sit, nil, np) {
			return newFix("bind only the source address and let connect() pick the port (IP_BIND_ADDRESS_NO_PORT)"+np.routeByPort.caveat(),
				Edit{Local: netip.AddrPortFrom(from.Addr(), 0), BindNoPort: true}), true
		}
	}
	np := clonePlan(p)
	np.Ops = slices.Delete(np.Ops, bi, bi+1)
	if np = rerouted(p, np); succeeds(sit, nil, np) {
		return newFix("do not bind a source port: let connect() pick one (it shares ports across destinations)"+np.routeByPort.caveat(),
			Edit{NoBind: true}), true
	}
	return Fix{}, false
}

// portFix finds the nearest port the plan works with. Ports no socket in
// the table uses are tried first; each candidate is confirmed by the model.
func portFix(sit *Situation, p Plan) (Fix, bool) {
	bi := bindIndex(p)
	if bi < 0 || p.Ops[bi].Addr.Port() == 0 {
		return Fix{}, false
	}
	orig := p.Ops[bi].Addr
	used := map[uint16]bool{}
	for _, e := range sit.Entries {
		used[e.Socket.Local.Port()] = true
	}

	try := func(c int) bool {
		np := clonePlan(p)
		np.Ops[bi].Addr = netip.AddrPortFrom(orig.Addr(), uint16(c))
		return succeeds(sit, nil, rerouted(p, np))
	}
	found := func(c int) (Fix, bool) {
		return newFix(fmt.Sprintf("use port %d instead (the nearest one that works)", c),
			Edit{Local: netip.AddrPortFrom(orig.Addr(), uint16(c))}), true
	}
	// A route that fails by source port (ip rule sport) fails alike from
	// every port up to the rules' next boundary: the boundaries are tried
	// first, nearest first.
	if ci := slices.IndexFunc(p.Ops, func(op rules.Op) bool { return op.RouteErr != 0 }); ci >= 0 {
		proto := uint8(syscall.IPPROTO_TCP)
		if p.Socket.Proto == inet.UDP {
			proto = syscall.IPPROTO_UDP
		}
		sels, _ := sportSelectors(orig.Addr().Unmap().Is4(), proto, p.Ops[ci].Addr.Port())
		for _, c := range classBoundaries(orig.Port(), sels, maxBoundaries) {
			if !used[c] && try(int(c)) {
				return found(int(c))
			}
		}
	}
	tries := 0
	for d := 1; d < 65536 && tries < maxPortTries; d++ {
		for _, c := range []int{int(orig.Port()) + d, int(orig.Port()) - d} {
			if c < 1 || c > 65535 || used[uint16(c)] {
				continue
			}
			tries++
			if try(c) {
				return found(c)
			}
		}
	}
	return Fix{}, false
}

// routePortFix: a connect() whose route lookup fails from the port it
// was judged with, and passes from another of the ephemeral range (ip
// rule sport), works from that port, bound first.
func routePortFix(sit *Situation, p Plan) (Fix, bool) {
	bp := p.routeByPort
	if bp == nil || bp.judged == 0 || bp.pass == 0 {
		return Fix{}, false
	}
	addr := netip.IPv4Unspecified() // the bound address, or the family's wildcard
	if p.Socket.Family == inet.IPv6 {
		addr = netip.IPv6Unspecified()
	}
	if bi := bindIndex(p); bi >= 0 {
		addr = p.Ops[bi].Addr.Addr()
	}
	e := Edit{Local: netip.AddrPortFrom(addr, bp.pass)}
	if !succeeds(sit, nil, applyEdit(p, e)) {
		return Fix{}, false
	}
	return newFix(fmt.Sprintf("bind source port %d, from which the route lookup passes (policy routing by source port)", bp.pass), e), true
}

// addressFix tries the address with the scope of the device it is on (a
// link-local address bound on another device), then the host's other local
// addresses of the same family, the wildcard, and for loopback another
// 127.x address.
func addressFix(sit *Situation, p Plan) (Fix, bool) {
	bi := bindIndex(p)
	if bi < 0 {
		return Fix{}, false
	}
	orig := p.Ops[bi].Addr
	var cands []netip.Addr
	if rules.NeedsScope(orig.Addr()) {
		for _, s := range sit.Host.Scoped {
			if s.Addr == orig.Addr().WithZone("") {
				cands = append(cands, s.Addr.WithZone(strconv.Itoa(s.Dev)))
			}
		}
	}
	if orig.Addr().Unmap().Is4() {
		cands = append(cands, netip.IPv4Unspecified())
	} else {
		cands = append(cands, netip.IPv6Unspecified())
	}
	for _, pr := range sit.Host.Local {
		a := pr.Addr()
		if pr.Bits() < a.BitLen() && a.Is4() {
			a = a.Next() // 127.0.0.0/8 -> 127.0.0.1
		}
		cands = append(cands, a)
	}
	if a := orig.Addr().Unmap(); a.Is4() && a.IsLoopback() {
		cands = append(cands, a.Next())
	}

	for i, a := range cands {
		if i >= maxPortTries {
			break
		}
		if a.Unmap().Is4() != orig.Addr().Unmap().Is4() || a == orig.Addr().Unmap() || a == orig.Addr() {
			continue
		}
		if orig.Addr().Is4In6() {
			a = netip.AddrFrom16(a.As16())
		}
		np := clonePlan(p)
		np.Ops[bi].Addr = netip.AddrPortFrom(a, orig.Port())
		if succeeds(sit, nil, rerouted(p, np)) {
			what := "bind address " + a.String() + " instead"
			if a.IsUnspecified() {
				what = "bind the wildcard address " + a.String() + " instead"
			}
			return newFix(what, Edit{Local: netip.AddrPortFrom(a, orig.Port())}), true
		}
	}
	return Fix{}, false
}

// widestRange is the most ip_local_port_range allows above the
// privileged ports.
var widestRange = inet.PortRange{Lo: 1024, Hi: 65535}

// rangeFix: when the kernel would run out of ports to pick, a wider
// net.ipv4.ip_local_port_range may leave one.
func rangeFix(sit *Situation, p Plan, res Result) (Fix, bool) {
	if res.Candidates != 0 || sit.Host.EphemeralRange == widestRange {
		return Fix{}, false
	}
	w := sit.World()
	w.Host.EphemeralRange = widestRange
	if !succeeds(sit, &w, p) {
		return Fix{}, false
	}
	return Fix{Change: fmt.Sprintf("widen net.ipv4.ip_local_port_range (now %d-%d), e.g. sysctl -w net.ipv4.ip_local_port_range=\"%d %d\"",
		sit.Host.EphemeralRange.Lo, sit.Host.EphemeralRange.Hi, widestRange.Lo, widestRange.Hi)}, true
}

// socketFix applies one change to the new socket.
func socketFix(sit *Situation, p Plan, change string, apply func(*rules.Socket)) (Fix, bool) {
	np := clonePlan(p)
	apply(&np.Socket)
	if np.Socket == p.Socket || !succeeds(sit, nil, np) {
		return Fix{}, false
	}
	return Fix{Change: change}, true
}

func clonePlan(p Plan) Plan {
	return Plan{Socket: p.Socket, Ops: slices.Clone(p.Ops)}
}

// applyEdit returns p changed as e says.
func applyEdit(p Plan, e Edit) Plan {
	np := clonePlan(p)
	bi := bindIndex(np)
	if e.NoBind && bi >= 0 {
		np.Ops = slices.Delete(np.Ops, bi, bi+1)
		bi = -1
	}
	if e.Local.IsValid() {
		if bi >= 0 {
			np.Ops[bi].Addr = e.Local
		} else {
			np.Ops = slices.Insert(np.Ops, 0, rules.Op{Kind: rules.OpBind, Addr: e.Local})
		}
	}
	if e.BindNoPort {
		np.Socket.BindNoPort = true
	}
	for _, o := range e.Options {
		switch o {
		case sockopt.ReusePort:
			np.Socket.ReusePort = true
		case sockopt.ReuseAddr:
			np.Socket.ReuseAddr = true
		}
	}
	if e.SetUID {
		np.Socket.UID = e.UID
	}
	return rerouted(p, np)
}

// rerouted is np, a change of plan p, with its connect's route looked up
// again when np binds another address or port than p (or none), or is
// another user's: the route, its errors included, may depend on the source
// address and port and the owner (ResolveSource). A lookup that fails
// otherwise leaves np without a source, compared on the peer alone.
func rerouted(p, np Plan) Plan {
	if boundAt(np) == boundAt(p) && np.Socket.UID == p.Socket.UID {
		np.routeByPort = p.routeByPort
		return np
	}
	_ = ResolveSource(&np)
	return np
}

// boundAt is the address and port p binds first, invalid when it binds
// none.
func boundAt(p Plan) netip.AddrPort {
	if bi := bindIndex(p); bi >= 0 {
		return p.Ops[bi].Addr
	}
	return netip.AddrPort{}
}

// fixHoldsInAll reports whether fix f makes p succeed whatever the unread
// reuse options are (in every alternative). Fixes that change existing
// sockets or wait for them to go do not rest on their options.
func fixHoldsInAll(sit *Situation, p Plan, f Fix, alts []alternative) bool {
	if f.others || f.Edit.isZero() {
		return true
	}
	np := applyEdit(p, f.Edit)
	for _, a := range alts {
		w := a.world(sit)
		if !succeeds(sit, &w, np) {
			return false
		}
	}
	return true
}

func (e Edit) isZero() bool {
	return !e.Local.IsValid() && !e.BindNoPort && len(e.Options) == 0 && !e.SetUID && !e.NoBind
}
