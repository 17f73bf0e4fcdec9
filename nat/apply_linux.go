package nat

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table Apply writes: its own, so that tuple
// never edits rules it did not make.
const TableName = "tuple-nat"

// Apply installs rules as a postrouting source-NAT chain in table
// TableName (family ip or ip6 after the rules' addresses; masquerade rules
// go to ip) of the network namespace open at nsFD (-1: the caller's),
// replacing what tuple installed there before. Lab topologies use it to
// make a masquerading router.
func Apply(nsFD int, family nftables.TableFamily, rules []Rule) error {
	var opts []nftables.ConnOption
	if nsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFD))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("open nftables netlink: %w", err)
	}
	table := &nftables.Table{Name: TableName, Family: family}
	conn.AddTable(table) // adding an existing table is not an error; its content goes next
	conn.DelTable(table)
	conn.AddTable(table)
	chain := conn.AddChain(&nftables.Chain{
		Name:     "postrouting",
		Table:    table,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	})
	for _, r := range rules {
		exprs, err := ruleExprs(r, family)
		if err != nil {
			return err
		}
		conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs})
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("install nftables table %s: %w", TableName, err)
	}
	return nil
}

// ruleExprs is the expression list of one rule, the inverse of
// ruleFromExprs.
func ruleExprs(r Rule, family nftables.TableFamily) ([]expr.Any, error) {
	var exprs []expr.Any
	if r.OutInterface != "" {
		if len(r.OutInterface) >= unix.IFNAMSIZ {
			return nil, fmt.Errorf("interface name %q is longer than %d bytes", r.OutInterface, unix.IFNAMSIZ-1)
		}
		name := make([]byte, unix.IFNAMSIZ)
		copy(name, r.OutInterface)
		exprs = append(exprs,
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name})
	}
	var protoMin, protoMax uint32
	if r.Ports.Lo != 0 || r.Ports.Hi != 0 {
		protoMin, protoMax = 3, 4 // legacy 16-byte registers NFT_REG_1..4; 1 and 2 hold addresses
		exprs = append(exprs,
			&expr.Immediate{Register: protoMin, Data: be16(r.Ports.Lo)},
			&expr.Immediate{Register: protoMax, Data: be16(r.Ports.Hi)})
	}
	if r.Masquerade {
		if protoMin != 0 {
			// The kernel's masq honours a port range only when the rule's
			// flags say NF_NAT_RANGE_PROTO_SPECIFIED (nft_masq_eval
			// passes the flags as they are), and the library we use
			// writes either the range's registers or flags, never both:
			// such a rule would keep every port (tuple lab saw it).
			return nil, fmt.Errorf("masquerade with a port range cannot be written so that the kernel honours it; use snat to the address with the port range")
		}
		return append(exprs, &expr.Masq{ToPorts: protoMin != 0, RegProtoMin: protoMin, RegProtoMax: protoMax,
			Random: r.Random, FullyRandom: r.FullyRandom, Persistent: r.Persistent}), nil
	}
	if !r.ToMin.IsValid() {
		return nil, fmt.Errorf("snat rule without an address")
	}
	to := r.ToMin.AsSlice()
	toMax := to
	if r.ToMax.IsValid() {
		toMax = r.ToMax.AsSlice()
	}
	nfproto := uint32(unix.NFPROTO_IPV4)
	if family == nftables.TableFamilyIPv6 {
		nfproto = unix.NFPROTO_IPV6
	}
	exprs = append(exprs,
		&expr.Immediate{Register: 1, Data: to},
		&expr.Immediate{Register: 2, Data: toMax},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: nfproto, RegAddrMin: 1, RegAddrMax: 2,
			RegProtoMin: protoMin, RegProtoMax: protoMax,
			Random: r.Random, FullyRandom: r.FullyRandom, Persistent: r.Persistent})
	return exprs, nil
}

func be16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }
