package nat

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"

	"github.com/tuple-net/tuple/sockopt"
)

// readRules lists the source-NAT rules of every nat chain on the
// postrouting hook, in the kernel's order.
func readRules(conn *nftables.Conn) ([]Rule, error) {
	chains, err := conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	var out []Rule
	for _, c := range chains {
		if c.Type != nftables.ChainTypeNAT || c.Hooknum == nil || *c.Hooknum != *nftables.ChainHookPostrouting {
			continue
		}
		rules, err := conn.GetRules(c.Table, c)
		if err != nil {
			return nil, fmt.Errorf("list rules of %s/%s: %w", c.Table.Name, c.Name, err)
		}
		for _, r := range rules {
			if rule, ok := ruleFromExprs(r.Exprs); ok {
				rule.Table, rule.Chain = c.Table.Name, c.Name
				out = append(out, rule)
			}
		}
	}
	return out, nil
}

// ruleFromExprs reads a source-NAT rule from its expressions: the values
// loaded into registers (immediate), an oifname match (meta + cmp), and the
// snat or masquerade statement that reads those registers. Rules that do
// not end in source NAT are not NAT rules (ok false).
func ruleFromExprs(exprs []expr.Any) (Rule, bool) {
	regs := map[uint32][]byte{}
	metaReg := map[uint32]expr.MetaKey{}
	var r Rule
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Immediate:
			regs[e.Register] = e.Data
		case *expr.Meta:
			metaReg[e.Register] = e.Key
		case *expr.Cmp:
			if metaReg[e.Register] == expr.MetaKeyOIFNAME && e.Op == expr.CmpOpEq {
				r.OutInterface = string(bytes.TrimRight(e.Data, "\x00"))
			}
		case *expr.Masq:
			r.Masquerade = true
			r.Random, r.FullyRandom, r.Persistent = e.Random, e.FullyRandom, e.Persistent
			if e.ToPorts {
				r.Ports = portRange(regs, e.RegProtoMin, e.RegProtoMax)
			}
			return r, true
		case *expr.Target:
			// iptables-nft keeps iptables' own SNAT and MASQUERADE
			// targets, with their binary range structs, in nftables.
			return ruleFromTarget(r, e)
		case *expr.NAT:
			if e.Type != expr.NATTypeSourceNAT {
				return Rule{}, false
			}
			r.Random, r.FullyRandom, r.Persistent = e.Random, e.FullyRandom, e.Persistent
			if e.RegAddrMin != 0 {
				r.ToMin = addrOf(regs[e.RegAddrMin])
				r.ToMax = r.ToMin
				if e.RegAddrMax != 0 {
					r.ToMax = addrOf(regs[e.RegAddrMax])
				}
			}
			if e.RegProtoMin != 0 {
				r.Ports = portRange(regs, e.RegProtoMin, e.RegProtoMax)
			}
			return r, true
		}
	}
	return Rule{}, false
}

func portRange(regs map[uint32][]byte, lo, hi uint32) sockopt.PortRange {
	pr := sockopt.PortRange{Lo: port(regs[lo])}
	pr.Hi = pr.Lo
	if hi != 0 {
		pr.Hi = port(regs[hi])
	}
	if pr.Hi < pr.Lo { // the kernel swaps a reversed range
		pr.Lo, pr.Hi = pr.Hi, pr.Lo
	}
	return pr
}

// port reads a port loaded into a register: network byte order.
func port(b []byte) uint16 {
	if len(b) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

func addrOf(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a.Unmap()
}

// ruleFromTarget reads iptables' SNAT and MASQUERADE targets (IPv4: the
// nf_nat_ipv4_multi_range_compat struct, one range).
func ruleFromTarget(r Rule, t *expr.Target) (Rule, bool) {
	if t.Name != "SNAT" && t.Name != "MASQUERADE" {
		return Rule{}, false
	}
	ranges, ok := t.Info.(*xt.NatIPv4MultiRangeCompat)
	if !ok || len(*ranges) != 1 {
		return Rule{}, false
	}
	rg := (*ranges)[0]
	flags := xt.NatRangeFlags(rg.Flags)
	r.Masquerade = t.Name == "MASQUERADE"
	if !r.Masquerade && flags&xt.NatRangeMapIPs != 0 {
		r.ToMin, _ = netip.AddrFromSlice(rg.MinIP.To4())
		r.ToMax, _ = netip.AddrFromSlice(rg.MaxIP.To4())
	}
	if flags&xt.NatRangeProtoSpecified != 0 {
		r.Ports = sockopt.PortRange{Lo: min(rg.MinPort, rg.MaxPort), Hi: max(rg.MinPort, rg.MaxPort)}
	}
	r.Random = flags&xt.NatRangeProtoRandom != 0
	r.FullyRandom = flags&xt.NatRangeProtoRandomFully != 0
	r.Persistent = flags&xt.NatRangePersistent != 0
	return r, true
}
