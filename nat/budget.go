package nat

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/tuple-net/tuple/inet"
)

// Rule is one source-NAT rule (nftables snat/masquerade, or iptables'
// SNAT/MASQUERADE targets) as the kernel applies it.
type Rule struct {
	Table, Chain string
	// Masquerade rules translate to the outgoing interface's address;
	// SNAT rules to an address of ToMin..ToMax.
	Masquerade   bool
	ToMin, ToMax netip.Addr
	// Ports is the rule's port range; zero when the rule gives none, and
	// the kernel then uses 1024-65535 for source ports from 1024 up
	// (1-511 and 600-1023 for lower ones).
	Ports inet.PortRange
	// Random and FullyRandom make the kernel search the range from a
	// random port even when the original source port would do.
	Random, FullyRandom, Persistent bool
	// OutInterface is the interface name the rule matches (oifname), ""
	// when the rule does not match one.
	OutInterface string
}

// defaultPorts is the range the kernel searches when a rule names none and
// the original source port is 1024 or above (nf_nat_l4proto_unique_tuple):
// 64,512 ports, the per-destination figure cloud NAT gateways document.
var defaultPorts = inet.PortRange{Lo: 1024, Hi: 65535}

// searchAttempts is how many ports the kernel's search visits in its first
// round (nf_nat_l4proto_unique_tuple's max_attempts). A range this size or
// smaller is searched exhaustively; a larger one by rounds of 128, 64, 32
// and 16 ports from random offsets, so near exhaustion a connection can
// fail while ports are still free.
const searchAttempts = 128

// PortRange is the range of ports the rule hands out.
func (r Rule) PortRange() inet.PortRange {
	if r.Ports == (inet.PortRange{}) {
		return defaultPorts
	}
	return r.Ports
}

// Describe is the rule in nft's words, for reports.
func (r Rule) Describe() string {
	s := "snat to " + r.ToMin.String()
	if r.ToMax.IsValid() && r.ToMax != r.ToMin {
		s += "-" + r.ToMax.String()
	}
	if r.Masquerade {
		s = "masquerade"
	}
	if r.Ports != (inet.PortRange{}) {
		s += fmt.Sprintf(" to :%d-%d", r.Ports.Lo, r.Ports.Hi)
	}
	if r.OutInterface != "" {
		s = "oifname " + r.OutInterface + " " + s
	}
	switch {
	case r.FullyRandom:
		s += " fully-random"
	case r.Random:
		s += " random"
	}
	if r.Persistent {
		s += " persistent"
	}
	if r.Table != "" {
		s += " (" + r.Table + "/" + r.Chain + ")"
	}
	return s
}

// Tuple is one direction of a conntrack entry.
type Tuple struct{ Src, Dst netip.AddrPort }

// Flow is one conntrack entry as the budget needs it.
type Flow struct {
	Proto       uint8 // IP protocol number: 6 TCP, 17 UDP
	Orig, Reply Tuple
	// SrcNAT is set when the kernel translated the source (IPS_SRC_NAT).
	SrcNAT bool
	// TCPState is conntrack's TCP state (TCPStateNames), 0 for other
	// protocols; Timeout the seconds left before the entry expires.
	TCPState uint8  `json:",omitempty"`
	Timeout  uint32 `json:",omitempty"`
}

// TCPStateNames are conntrack's TCP states (enum tcp_conntrack).
var TCPStateNames = []string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
	"CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// State names the entry's TCP state, "" for other protocols.
func (f Flow) State() string {
	if f.Proto != 6 || int(f.TCPState) >= len(TCPStateNames) {
		return ""
	}
	return TCPStateNames[f.TCPState]
}

// Budget is what one NAT address can still hand out towards one
// destination for one protocol.
type Budget struct {
	NATAddress  netip.Addr     `json:"nat_address"`
	Proto       string         `json:"proto"`
	Destination netip.AddrPort `json:"destination"`
	// Translated counts conntrack entries whose source the NAT rewrote to
	// NATAddress towards Destination.
	Translated int `json:"translated"`
	// InUse counts ports of the rule's range that some conntrack entry
	// towards Destination holds on NATAddress (translated or not: the
	// router's own connections take ports too).
	InUse int `json:"in_use"`
	// Size is the number of ports in the rule's range; Free = Size - InUse.
	Size int `json:"size"`
	Free int `json:"free"`
	// Exhaustive is true when the kernel's search visits every port of the
	// range, so each free port is reachable; otherwise a connection can
	// fail near exhaustion while ports remain.
	Exhaustive bool   `json:"exhaustive"`
	Rule       string `json:"rule"` // the rule, "" when none could be told
}

// Budgets computes the NAT port budgets from the NAT rules, the conntrack
// flows and the addresses of each interface (to tell which masquerade rule
// produced an address). One budget per (NAT address, protocol, destination)
// that has translated flows, busiest first. Flows whose NAT address no rule
// explains get a budget with Rule "" and the kernel's default range.
func Budgets(rules []Rule, flows []Flow, ifaceAddrs map[string][]netip.Addr) []Budget {
	type key struct {
		proto uint8
		nat   netip.Addr
		dest  netip.AddrPort
	}
	held := map[key]map[uint16]struct{}{}
	translated := map[key]int{}
	for _, f := range flows {
		// The reply tuple is what the NAT keeps unique: from the
		// destination to the NAT address and port.
		k := key{f.Proto, f.Reply.Dst.Addr().Unmap(), unmapPort(f.Reply.Src)}
		ports := held[k]
		if ports == nil {
			ports = map[uint16]struct{}{}
			held[k] = ports
		}
		ports[f.Reply.Dst.Port()] = struct{}{}
		if f.SrcNAT {
			translated[k]++
		}
	}
	var out []Budget
	for k, n := range translated {
		rule, ok := ruleFor(rules, k.nat, ifaceAddrs)
		pr := defaultPorts
		b := Budget{NATAddress: k.nat, Proto: protoName(k.proto), Destination: k.dest, Translated: n}
		if ok {
			pr = rule.PortRange()
			b.Rule = rule.Describe()
		}
		for p := range held[k] {
			if p >= pr.Lo && p <= pr.Hi {
				b.InUse++
			}
		}
		b.Size = int(pr.Hi) - int(pr.Lo) + 1
		b.Free = b.Size - b.InUse
		b.Exhaustive = b.Size <= searchAttempts
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Budget) int {
		return cmp.Or(
			cmp.Compare(a.Free, b.Free),
			a.NATAddress.Compare(b.NATAddress),
			cmp.Compare(a.Proto, b.Proto),
			a.Destination.Compare(b.Destination))
	})
	return out
}

// ruleFor picks the first rule that could have produced NAT address a: an
// SNAT rule whose range holds it, or a masquerade rule whose outgoing
// interface has it (or that names no interface).
func ruleFor(rules []Rule, a netip.Addr, ifaceAddrs map[string][]netip.Addr) (Rule, bool) {
	for _, r := range rules {
		if !r.Masquerade {
			lo, hi := r.ToMin.Unmap(), r.ToMax.Unmap()
			if !hi.IsValid() {
				hi = lo
			}
			if lo.IsValid() && a.Compare(lo) >= 0 && a.Compare(hi) <= 0 {
				return r, true
			}
			continue
		}
		if r.OutInterface == "" || slices.Contains(ifaceAddrs[r.OutInterface], a) {
			return r, true
		}
	}
	return Rule{}, false
}

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 132:
		return "sctp"
	}
	return fmt.Sprintf("proto-%d", p)
}
