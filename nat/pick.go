package nat

import (
	"fmt"
	"net/netip"

	"github.com/tuple-net/tuple/inet"
)

// Pick is what the kernel's source NAT does with one new connection, told
// before its first packet from the rule and the conntrack table
// (get_unique_tuple in nf_nat_core.c):
//
//  1. Without random/fully-random, a source the NAT already maps (same
//     inside address, port and protocol, towards any destination) gets the
//     same outside address and port again if that is unique towards this
//     destination.
//  2. Otherwise the source port is kept when it is in the rule's range (any
//     port when the rule gives none) and no conntrack entry holds the
//     outside four-tuple.
//  3. Otherwise the kernel searches the range from a random offset for a
//     port no entry holds towards the destination; with none left it keeps
//     a clashing tuple, conntrack refuses it at confirmation
//     (insert_failed) and drops the packet: the client's connect times out.
//
// random and fully-random skip 1 and 2: every connection searches.
type Pick struct {
	Rule        string         `json:"rule"`
	NATAddress  netip.Addr     `json:"nat_address"`
	Destination netip.AddrPort `json:"destination"`
	// Keep: the outside source port is Port (the inside port, or an
	// earlier mapping of the same inside source).
	Keep bool   `json:"keep"`
	Port uint16 `json:"port,omitempty"`
	// Range is where a searched port comes from; Free counts its ports no
	// conntrack entry holds towards Destination before this connection.
	Range inet.PortRange `json:"range"`
	Free  int            `json:"free"`
	// Drop: no port of the range is free: the kernel drops the connection.
	Drop bool `json:"drop"`
	// Exhaustive: the search visits every port of the range (128 ports or
	// fewer), so Free > 0 means a port will be found.
	Exhaustive bool   `json:"exhaustive"`
	Why        string `json:"why"`
	held       map[uint16]bool
}

// Predict tells what the NAT rule matching a connection of proto from
// orig.Src to orig.Dst, leaving by interface out, does with its source.
// rules are in the kernel's order, flows the conntrack table before the
// connection, ifaceAddrs each interface's addresses (a masquerade rule
// translates to out's first address). ok is false when no rule matches
// (the connection leaves untranslated).
func Predict(rules []Rule, flows []Flow, ifaceAddrs map[string][]netip.Addr, out string, proto uint8, orig Tuple) (p Pick, ok bool) {
	rule, ok := matchRule(rules, out)
	if !ok {
		return Pick{}, false
	}
	src, dst := unmapPort(orig.Src), unmapPort(orig.Dst)
	p = Pick{Rule: rule.Describe(), Destination: dst, NATAddress: rule.ToMin.Unmap()}
	var replaced string
	flows, replaced = replacedFlows(flows, proto, src, dst)
	if rule.Masquerade {
		if addrs := ifaceAddrs[out]; len(addrs) > 0 {
			p.NATAddress = addrs[0]
		}
	}
	if !p.NATAddress.IsValid() {
		p.Why = "the rule gives no address this connection could take"
		return p, true
	}
	p.holdPorts(flows, proto, dst)
	p.setRange(rule, src.Port())
	random := rule.Random || rule.FullyRandom
	if !random && p.keep(rule, flows, proto, src, dst, replaced) {
		return p, true
	}
	p.search(rule, random, src, dst)
	p.Why = replaced + p.Why
	return p, true
}

// matchRule is the first rule for interface out, in the kernel's order.
func matchRule(rules []Rule, out string) (Rule, bool) {
	for _, r := range rules {
		if r.OutInterface == "" || r.OutInterface == out {
			return r, true
		}
	}
	return Rule{}, false
}

// holdPorts records the ports held towards dst on the NAT address: the
// reply tuples of every entry (what nf_nat_used_tuple looks up).
func (p *Pick) holdPorts(flows []Flow, proto uint8, dst netip.AddrPort) {
	p.held = map[uint16]bool{}
	for _, f := range flows {
		if f.Proto == proto && unmapPort(f.Reply.Src) == dst && f.Reply.Dst.Addr().Unmap() == p.NATAddress {
			p.held[f.Reply.Dst.Port()] = true
		}
	}
}

// setRange sets the ports the NAT may pick from for a source port and
// counts the free ones.
func (p *Pick) setRange(rule Rule, srcPort uint16) {
	p.Range = rule.PortRange()
	if rule.Ports == (inet.PortRange{}) && srcPort < 1024 {
		// Low ports stay low: 1-511, or 600-1023 (nf_nat_l4proto_unique_tuple).
		p.Range = inet.PortRange{Lo: 1, Hi: 511}
		if srcPort >= 512 {
			p.Range = inet.PortRange{Lo: 600, Hi: 1023}
		}
	}
	for port := int(p.Range.Lo); port <= int(p.Range.Hi); port++ {
		if !p.held[uint16(port)] {
			p.Free++
		}
	}
	p.Exhaustive = int(p.Range.Hi)-int(p.Range.Lo)+1 <= searchAttempts
}

// allows tells whether the rule's port range (all ports when it has none)
// holds port.
func (r Rule) allows(port uint16) bool {
	return r.Ports == (inet.PortRange{}) || port >= r.Ports.Lo && port <= r.Ports.Hi
}

// keep is what a rule without random tries before searching: 1, the port
// an existing mapping of the same inside source has; 2, the inside port
// itself. It reports whether one of them was free.
func (p *Pick) keep(rule Rule, flows []Flow, proto uint8, src, dst netip.AddrPort, replaced string) bool {
	for _, f := range flows {
		if !f.SrcNAT || f.Proto != proto || unmapPort(f.Orig.Src) != src || f.Reply.Dst.Addr().Unmap() != p.NATAddress {
			continue
		}
		if port := f.Reply.Dst.Port(); rule.allows(port) && !p.held[port] {
			p.Keep, p.Port = true, port
			p.Why = fmt.Sprintf("%s already goes out as %s: the NAT gives it the same outside port again", src, netip.AddrPortFrom(p.NATAddress, port))
			return true
		}
		break
	}
	if rule.allows(src.Port()) && !p.held[src.Port()] {
		p.Keep, p.Port = true, src.Port()
		p.Why = replaced + fmt.Sprintf("%s -> %s is not held by any conntrack entry: the source port is kept", netip.AddrPortFrom(p.NATAddress, src.Port()), dst)
		return true
	}
	return false
}

// search explains step 3, the search from a random port: why the source
// port was not kept, and whether any port is free (none: the connection
// is dropped).
func (p *Pick) search(rule Rule, random bool, src, dst netip.AddrPort) {
	var reason string
	switch {
	case random:
		reason = "random picks every port"
	case !rule.allows(src.Port()):
		reason = fmt.Sprintf("port %d is outside the rule's range", src.Port())
	default:
		reason = fmt.Sprintf("%s -> %s is held by a conntrack entry", netip.AddrPortFrom(p.NATAddress, src.Port()), dst)
	}
	if p.Free == 0 {
		p.Drop = true
		p.Why = fmt.Sprintf("%s, and all %d ports of %d-%d are held towards %s: conntrack refuses the clash (insert_failed) and drops the connection",
			reason, int(p.Range.Hi)-int(p.Range.Lo)+1, p.Range.Lo, p.Range.Hi, dst)
		return
	}
	p.Why = fmt.Sprintf("%s: the NAT searches %d-%d from a random port, %d free towards %s", reason, p.Range.Lo, p.Range.Hi, p.Free, dst)
	if !p.Exhaustive {
		p.Why += " (the search is not exhaustive past 128 ports)"
	}
}

// replacedFlows drops the entry a new TCP connection replaces: one with
// the same original four-tuple in TIME_WAIT or CLOSE. The connection's SYN
// ends it (nf_conntrack_proto_tcp.c: a SYN in those states kills the entry
// and the packet starts a new one), so its outside port is free again.
// It returns the flows left and, when one was dropped, words saying so.
func replacedFlows(flows []Flow, proto uint8, src, dst netip.AddrPort) ([]Flow, string) {
	if proto != 6 {
		return flows, ""
	}
	for i, f := range flows {
		if f.Proto == 6 && unmapPort(f.Orig.Src) == src && unmapPort(f.Orig.Dst) == dst && (f.State() == "TIME_WAIT" || f.State() == "CLOSE") {
			why := fmt.Sprintf("the SYN replaces the %s entry of %s -> %s, freeing %s; ", f.State(), src, dst, f.Reply.Dst)
			return append(flows[:i:i], flows[i+1:]...), why
		}
	}
	return flows, ""
}

// Matches reports whether the far side seeing the connection come from
// outside agrees with the pick (an invalid outside: the connection never
// arrived).
func (p Pick) Matches(outside netip.AddrPort) bool {
	if p.Drop {
		return !outside.IsValid()
	}
	outside = unmapPort(outside)
	if outside.Addr() != p.NATAddress {
		return false
	}
	if p.Keep {
		return outside.Port() == p.Port
	}
	port := outside.Port()
	return port >= p.Range.Lo && port <= p.Range.Hi && !p.held[port]
}

// String is the pick in a few words: the outside address, a port range
// when the port is searched, or that the connection is dropped.
func (p Pick) String() string {
	switch {
	case p.Drop:
		return "drop (no free port)"
	case p.Keep:
		return netip.AddrPortFrom(p.NATAddress, p.Port).String() + " (kept)"
	}
	return fmt.Sprintf("%s:%d-%d (%d free)", p.NATAddress, p.Range.Lo, p.Range.Hi, p.Free)
}
