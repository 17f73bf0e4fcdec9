package nat

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/ti-mo/conntrack"
)

func read(ctx context.Context) (Snapshot, error) {
	var s Snapshot
	nft, err := nftables.New()
	if err != nil {
		return s, fmt.Errorf("open nftables netlink: %w", err)
	}
	if s.Rules, err = readRules(nft); err != nil {
		return s, err
	}
	ct, err := conntrack.Dial(nil)
	if err != nil {
		return s, fmt.Errorf("open conntrack netlink: %w", err)
	}
	defer ct.Close()
	if err := ctx.Err(); err != nil {
		return s, err
	}
	flows, err := ct.Dump(nil)
	if err != nil {
		return s, fmt.Errorf("dump conntrack table: %w", err)
	}
	s.Flows = make([]Flow, 0, len(flows))
	for _, f := range flows {
		s.Flows = append(s.Flows, Flow{
			Proto:   f.TupleOrig.Proto.Protocol,
			Orig:    tupleOf(f.TupleOrig),
			Reply:   tupleOf(f.TupleReply),
			SrcNAT:  f.Status.SrcNAT(),
			Timeout: f.Timeout,
		})
		if f.ProtoInfo.TCP != nil {
			s.Flows[len(s.Flows)-1].TCPState = f.ProtoInfo.TCP.State
		}
	}
	stats, err := ct.Stats()
	if err != nil {
		return s, fmt.Errorf("read conntrack statistics: %w", err)
	}
	for _, st := range stats {
		s.Counters.InsertFailed += uint64(st.InsertFailed)
		s.Counters.Drop += uint64(st.Drop)
		s.Counters.EarlyDrop += uint64(st.EarlyDrop)
	}
	s.Interfaces, err = interfaceAddrs()
	return s, err
}

func tupleOf(t conntrack.Tuple) Tuple {
	return Tuple{
		Src: netip.AddrPortFrom(t.IP.SourceAddress.Unmap(), t.Proto.SourcePort),
		Dst: netip.AddrPortFrom(t.IP.DestinationAddress.Unmap(), t.Proto.DestinationPort),
	}
}

// interfaceAddrs maps each interface name to its addresses, to tell which
// masquerade rule produced a NAT address.
func interfaceAddrs() (map[string][]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	out := make(map[string][]netip.Addr, len(ifs))
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					out[ifc.Name] = append(out[ifc.Name], ip.Unmap())
				}
			}
		}
	}
	return out, nil
}
