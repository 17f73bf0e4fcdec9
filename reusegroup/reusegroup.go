package reusegroup

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/sockfacts"
	"github.com/tuple-net/tuple/socktab"
)

// Group is one SO_REUSEPORT group.
type Group struct {
	Proto inet.Proto
	Local netip.AddrPort
	UID   uint32
	// Members are ordered by index when Known, else as the table listed
	// them.
	Members []Member
	// Known: the kernel's records were read, so ID, the members' Index and
	// Prog are facts; otherwise Reason says why not.
	Known  bool
	Reason string
	ID     uint32 // the kernel's reuseport_id
	// Prog is the attached steering program, nil for none (the kernel's
	// hash).
	Prog *sockfacts.Program
	// Size is the kernel's member count (num_socks), which may exceed
	// len(Members) when some member is outside the snapshot.
	Size int
}

// Member is one socket of a group.
type Member struct {
	Socket *socktab.Socket // owners, uid, RecvQ: accept queue, SendQ: its limit (TCP listeners)
	Index  int             // -1 when unknown
}

// Build groups the sockets of a snapshot. facts are sockfacts.ReadGroups'
// records for the snapshot's protocols, read after the snapshot (so every
// cookie is assigned); factsErr is why they could not be read (facts are
// then ignored).
func Build(socks []socktab.Socket, facts []sockfacts.Member, factsErr error) []Group {
	if factsErr == nil {
		return fromFacts(socks, facts)
	}
	return fromTable(socks, "unknown: "+factsErr.Error())
}

func fromFacts(socks []socktab.Socket, facts []sockfacts.Member) []Group {
	type key struct {
		proto inet.Proto
		id    uint32
	}
	byCookie := make(map[uint64]*sockfacts.Member, len(facts))
	for i := range facts {
		if facts[i].Cookie != 0 {
			byCookie[facts[i].Cookie] = &facts[i]
		}
	}
	groups := map[key]*Group{}
	var order []key
	for i := range socks {
		s := &socks[i]
		f := byCookie[s.Cookie]
		if s.Cookie == 0 || f == nil || inet.Proto(f.Proto) != s.Proto {
			continue
		}
		k := key{s.Proto, f.GroupID}
		g := groups[k]
		if g == nil {
			g = &Group{Proto: s.Proto, Local: s.Local, UID: s.UID, Known: true, ID: f.GroupID, Size: f.Members}
			if f.Attached {
				p := f.Prog
				g.Prog = &p
			}
			groups[k] = g
			order = append(order, k)
		}
		g.Members = append(g.Members, Member{Socket: s, Index: f.Index})
	}
	out := make([]Group, 0, len(order))
	for _, k := range order {
		g := groups[k]
		slices.SortStableFunc(g.Members, func(a, b Member) int {
			// Unknown indices (-1) last.
			return cmp.Compare(uint(a.Index), uint(b.Index))
		})
		out = append(out, *g)
	}
	return out
}

// fromTable forms groups without the kernel's records: sockets of one
// protocol, address, port and uid with SO_REUSEPORT (TCP: listeners only;
// several TCP listeners on one address and port are a group even when
// their options could not be read).
func fromTable(socks []socktab.Socket, reason string) []Group {
	type key struct {
		proto inet.Proto
		local netip.AddrPort
		uid   uint32
	}
	cands := map[key][]int{}
	var order []key
	for i := range socks {
		s := &socks[i]
		if s.Proto == inet.TCP && s.State != socktab.Listen {
			continue
		}
		rp := s.Options.ReusePort
		if rp.Known && !rp.Value {
			continue
		}
		k := key{s.Proto, s.Local, s.UID}
		if cands[k] == nil {
			order = append(order, k)
		}
		cands[k] = append(cands[k], i)
	}
	var out []Group
	for _, k := range order {
		idx := cands[k]
		known := false
		for _, i := range idx {
			known = known || socks[i].Options.ReusePort.Known
		}
		// Unknown options: only several TCP listeners on one address
		// and port prove a group.
		if !known && (k.proto != inet.TCP || len(idx) < 2) {
			continue
		}
		g := Group{Proto: k.proto, Local: k.local, UID: k.uid, Reason: reason, Size: len(idx)}
		for _, i := range idx {
			g.Members = append(g.Members, Member{Socket: &socks[i], Index: -1})
		}
		out = append(out, g)
	}
	return out
}
