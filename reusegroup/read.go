package reusegroup

import (
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/sockfacts"
	"github.com/tuple-net/tuple/socktab"
)

// Read builds the groups among socks (a snapshot, or part of one), reading
// the kernel's group records of the calling thread's network namespace (the
// one the snapshot was taken in) for the protocols that have candidates.
func Read(socks []socktab.Socket) []Group {
	var tcp, udp bool
	for i := range socks {
		s := &socks[i]
		if rp := s.Options.ReusePort; rp.Known && !rp.Value {
			continue
		}
		switch {
		case s.Proto == inet.TCP && s.State == socktab.Listen:
			tcp = true
		case s.Proto == inet.UDP:
			udp = true
		}
	}
	if !tcp && !udp {
		return nil
	}
	var facts []sockfacts.Member
	var err error
	for _, p := range []struct {
		want  bool
		proto inet.Proto
	}{{tcp, inet.TCP}, {udp, inet.UDP}} {
		if !p.want || err != nil {
			continue
		}
		var ms []sockfacts.Member
		ms, err = sockfacts.ReadGroups(p.proto)
		facts = append(facts, ms...)
	}
	return Build(socks, facts, err)
}
