package lab

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/lazyre"
	"github.com/tuple-net/tuple/nat"
)

// A topology is the hosts of a scenario beyond its own namespace: each host
// is a network namespace of its own, joined to others by veth links, and a
// router forwards between its links and may source-NAT what leaves one.
// Topology lines come before a scenario's operations; sockets are placed on
// a host with the in=HOST option.

// Limits of one scenario's topology.
const (
	maxHosts     = 8
	maxLinkAddrs = 8 // addresses on one end of a link
)

// Host is one namespace of a topology.
type Host struct {
	Name string
	Line int
	// Router: the host forwards IPv4 (net.ipv4.ip_forward=1).
	Router bool
	// Via is the host's default gateway, an address of a host it is
	// linked to; invalid for none.
	Via netip.Addr
}

// Link is a veth pair between hosts A and B. In each host the interface is
// named after the host at its other end, so a rule can say out=HOST.
type Link struct {
	Line   int
	A, B   string
	AAddrs []netip.Prefix
	BAddrs []netip.Prefix
}

// NATRule is a source-NAT rule a router applies (nat.Apply) to what
// leaves it by the link to host Out (any link when Out is empty).
type NATRule struct {
	Line   int
	Router string
	Rule   nat.Rule // OutInterface is Out, the interface's name
}

// Topology is a scenario's hosts, links and NAT rules.
type Topology struct {
	Hosts []Host
	Links []Link
	NAT   []NATRule
}

// Empty reports whether the scenario has no hosts of its own.
func (t Topology) Empty() bool { return len(t.Hosts) == 0 }

// host returns the host called name, or nil.
func (t *Topology) host(name string) *Host {
	for i := range t.Hosts {
		if t.Hosts[i].Name == name {
			return &t.Hosts[i]
		}
	}
	return nil
}

// linked reports whether hosts a and b share a link.
func (t Topology) linked(a, b string) bool {
	for _, l := range t.Links {
		if l.A == a && l.B == b || l.A == b && l.B == a {
			return true
		}
	}
	return false
}

// Addrs returns each address given to host on its links, with the name of
// the interface (the host at the link's other end).
func (t Topology) Addrs(host string) map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for _, l := range t.Links {
		if l.A == host {
			out[l.B] = append(out[l.B], l.AAddrs...)
		}
		if l.B == host {
			out[l.A] = append(out[l.A], l.BAddrs...)
		}
	}
	return out
}

// onLink reports whether a is on the prefix of one of host's links.
func (t Topology) onLink(host string, a netip.Addr) bool {
	for _, pfx := range t.Addrs(host) {
		for _, p := range pfx {
			if p.Masked().Contains(a) {
				return true
			}
		}
	}
	return false
}

// Owner returns the host that has address a on a link, "" for none.
func (t Topology) Owner(a netip.Addr) string {
	for _, l := range t.Links {
		for _, p := range l.AAddrs {
			if p.Addr() == a {
				return l.A
			}
		}
		for _, p := range l.BAddrs {
			if p.Addr() == a {
				return l.B
			}
		}
	}
	return ""
}

// hostNameRE: a host's name is also an interface name in its neighbours
// (at most 15 bytes).
var hostNameRE = lazyre.New(`^[a-z][a-z0-9-]{0,14}$`)

// topoKeyword reports whether f starts a topology line rather than an
// operation of a socket named like a keyword.
func topoKeyword(f []string) bool {
	if len(f) < 2 {
		return false
	}
	if _, op := kindNames[f[1]]; op {
		return false
	}
	switch f[0] {
	case "host", "router", "link", "nat":
		return true
	}
	return false
}

func (p *parser) topology(sc *Scenario, f []string, expect bool) error {
	if expect {
		return p.errorf("%s lines assert nothing: no => on them", f[0])
	}
	if len(sc.Steps) > 0 {
		return p.errorf("%s: topology lines (host, router, link, nat) come before the scenario's operations", f[0])
	}
	t := &sc.Topology
	switch f[0] {
	case "host", "router":
		return p.hostLine(t, f)
	case "link":
		return p.linkLine(t, f)
	}
	return p.natLine(t, f)
}

func (p *parser) hostLine(t *Topology, f []string) error {
	name := f[1]
	if !hostNameRE().MatchString(name) || name == "lo" {
		return p.errorf("bad host name %q (a lowercase letter, then up to 14 lowercase letters, digits or -; not lo)", name)
	}
	if _, op := kindNames[name]; op || topoKeyword([]string{name, "x"}) {
		return p.errorf("bad host name %q: it is a keyword of the format", name)
	}
	if h := t.host(name); h != nil {
		return p.errorf("host %s already defined at line %d", name, h.Line)
	}
	if len(t.Hosts) >= maxHosts {
		return p.errorf("more than %d hosts in one scenario", maxHosts)
	}
	h := Host{Name: name, Line: p.line, Router: f[0] == "router"}
	for _, a := range f[2:] {
		v, ok := strings.CutPrefix(a, "via=")
		if !ok {
			return p.errorf("unknown %s option %q (want via=GATEWAY)", f[0], a)
		}
		if h.Via.IsValid() {
			return p.errorf("option via given twice")
		}
		gw, err := netip.ParseAddr(v)
		if err != nil || !gw.Is4() {
			return p.errorf("via=%s: want an IPv4 address (topologies are IPv4)", v)
		}
		h.Via = gw
	}
	t.Hosts = append(t.Hosts, h)
	return nil
}

func (p *parser) linkLine(t *Topology, f []string) error {
	if len(f) != 3 {
		return p.errorf("link takes two ends: link A=ADDR/LEN[,ADDR/LEN...] B=ADDR/LEN[,...]")
	}
	l := Link{Line: p.line}
	for i, end := range f[1:] {
		name, addrs, ok := strings.Cut(end, "=")
		if !ok || addrs == "" {
			return p.errorf("link end %q: want HOST=ADDR/LEN[,ADDR/LEN...]", end)
		}
		if t.host(name) == nil {
			return p.errorf("link end %q: no host %s before this line (add host %s or router %s)", end, name, name, name)
		}
		var pfx []netip.Prefix
		for _, s := range strings.Split(addrs, ",") {
			pp, err := netip.ParsePrefix(s)
			if err != nil || !pp.Addr().Is4() || pp.Bits() < 8 || pp.Bits() > 30 || pp.Addr() == pp.Masked().Addr() {
				return p.errorf("link end %q: %q is not an IPv4 host address with a prefix length of 8-30 (e.g. 192.0.2.1/24)", end, s)
			}
			if pp.Addr().IsLoopback() || pp.Addr().IsMulticast() || pp.Addr().IsUnspecified() {
				return p.errorf("link end %q: %s cannot be an interface's address", end, pp.Addr())
			}
			same := func(x netip.Prefix) bool { return x.Addr() == pp.Addr() }
			if t.Owner(pp.Addr()) != "" || slices.ContainsFunc(pfx, same) || slices.ContainsFunc(l.AAddrs, same) {
				return p.errorf("link end %q: address %s is already on a link", end, pp.Addr())
			}
			pfx = append(pfx, pp)
		}
		if len(pfx) > maxLinkAddrs {
			return p.errorf("link end %q: more than %d addresses", end, maxLinkAddrs)
		}
		if i == 0 {
			l.A, l.AAddrs = name, pfx
		} else {
			l.B, l.BAddrs = name, pfx
		}
	}
	if l.A == l.B {
		return p.errorf("link joins %s to itself", l.A)
	}
	if t.linked(l.A, l.B) {
		return p.errorf("hosts %s and %s are linked already (one link per pair: the interface is named after the other host)", l.A, l.B)
	}
	t.Links = append(t.Links, l)
	return nil
}

func (p *parser) natLine(t *Topology, f []string) error {
	if len(f) < 3 {
		return p.errorf("nat takes ROUTER snat to=ADDR [OPTS] or ROUTER masquerade [OPTS]")
	}
	h := t.host(f[1])
	switch {
	case h == nil:
		return p.errorf("nat: no host %s before this line", f[1])
	case !h.Router:
		return p.errorf("nat: %s is a host, not a router (declare it with router %s)", f[1], f[1])
	}
	n := NATRule{Line: p.line, Router: f[1]}
	switch f[2] {
	case "snat":
	case "masquerade":
		n.Rule.Masquerade = true
	default:
		return p.errorf("nat: unknown kind %q (want snat or masquerade)", f[2])
	}
	seen := map[string]bool{}
	for _, a := range f[3:] {
		key, val, hasVal := strings.Cut(a, "=")
		if seen[key] {
			return p.errorf("option %q given twice", key)
		}
		seen[key] = true
		switch key {
		case "to":
			a, err := netip.ParseAddr(val)
			if n.Rule.Masquerade || err != nil || !a.Is4() {
				return p.errorf("option to: want to=IPV4ADDR, on snat only (masquerade takes the outgoing interface's address)")
			}
			n.Rule.ToMin, n.Rule.ToMax = a, a
		case "ports":
			pr, err := inet.ParsePortRange(val)
			if err != nil || pr.Lo == 0 {
				return p.errorf("option ports: want ports=LO-HI, 1-65535")
			}
			n.Rule.Ports = pr
		case "out":
			if t.host(val) == nil || !t.linked(f[1], val) {
				return p.errorf("option out: want out=HOST, a host linked to %s", f[1])
			}
			n.Rule.OutInterface = val
		case "random", "fully-random", "persistent":
			if hasVal {
				return p.errorf("option %q takes no value", key)
			}
			switch key {
			case "random":
				n.Rule.Random = true
			case "fully-random":
				n.Rule.FullyRandom = true
			default:
				n.Rule.Persistent = true
			}
		default:
			return p.errorf("unknown nat option %q (want to=ADDR, ports=LO-HI, out=HOST, random, fully-random or persistent)", key)
		}
	}
	if n.Rule.Random && n.Rule.FullyRandom {
		return p.errorf("nat: random and fully-random together; pick one")
	}
	if !n.Rule.Masquerade && !n.Rule.ToMin.IsValid() {
		return p.errorf("nat: snat needs to=ADDR")
	}
	if n.Rule.Masquerade && n.Rule.Ports != (inet.PortRange{}) {
		return p.errorf("nat: masquerade takes no ports= here (the rule could not be written so that the kernel honours the range); use snat to=ADDR ports=LO-HI")
	}
	t.NAT = append(t.NAT, n)
	return nil
}

// checkTopology checks what only the whole scenario tells: each gateway is
// an address of a linked host, on a prefix the host has.
func (p *parser) checkTopology(sc *Scenario) error {
	t := sc.Topology
	for _, h := range t.Hosts {
		if !h.Via.IsValid() {
			continue
		}
		owner := t.Owner(h.Via)
		if owner == "" || !t.linked(h.Name, owner) {
			return &ParseError{File: p.file, Line: h.Line, Msg: fmt.Sprintf("host %s: via=%s is no address of a host linked to it", h.Name, h.Via)}
		}
		onLink := false
		for _, pp := range t.Addrs(h.Name)[owner] {
			onLink = onLink || pp.Masked().Contains(h.Via)
		}
		if !onLink {
			return &ParseError{File: p.file, Line: h.Line, Msg: fmt.Sprintf("host %s: via=%s is not on a prefix of its link to %s", h.Name, h.Via, owner)}
		}
	}
	for _, h := range t.Hosts {
		if len(t.Addrs(h.Name)) == 0 {
			return &ParseError{File: p.file, Line: h.Line, Msg: fmt.Sprintf("host %s has no link", h.Name)}
		}
	}
	return nil
}

// hostOption reads in=HOST, an option of socket and server lines.
func (p *parser) hostOption(sc *Scenario, val string) (string, error) {
	if sc.Topology.host(val) == nil {
		return "", p.errorf("option in: no host %q in this scenario (declare it with host %s before the operations)", val, val)
	}
	return val, nil
}

// topoRequest configures one host of a topology, from inside its namespace.
type topoRequest struct {
	// Ifaces maps each interface (named after the host at the link's other
	// end) to its addresses.
	Ifaces  map[string][]string `json:"ifaces"`
	Via     string              `json:"via,omitempty"`
	Forward bool                `json:"forward,omitempty"`
	NAT     []nat.Rule          `json:"nat,omitempty"`
}
