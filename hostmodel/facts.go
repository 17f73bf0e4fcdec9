package hostmodel

import (
	"net/netip"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/sockfacts"
	"github.com/tuple-net/tuple/socktab"
)

// Facts indexes the kernel's records of sockets (from sockfacts) so socket
// table rows can find theirs: by cookie when both sides have one, else by
// protocol and four-tuple when exactly one record has it.
type Facts struct {
	byCookie map[uint64]*sockfacts.Sock
	byKey    map[sockfacts.Key]*sockfacts.Sock
	dupKey   map[sockfacts.Key]bool
}

// IndexFacts builds the index.
func IndexFacts(socks []sockfacts.Sock) *Facts {
	f := &Facts{byCookie: map[uint64]*sockfacts.Sock{}, byKey: map[sockfacts.Key]*sockfacts.Sock{}, dupKey: map[sockfacts.Key]bool{}}
	for i := range socks {
		s := &socks[i]
		if s.Cookie != 0 {
			f.byCookie[s.Cookie] = s
		}
		k := normKey(s.Proto, s.Local, s.Remote)
		if _, dup := f.byKey[k]; dup {
			f.dupKey[k] = true
		}
		f.byKey[k] = s
	}
	return f
}

// Lookup returns the record of s, or nil. A nil Facts has no records.
func (f *Facts) Lookup(s *socktab.Socket) *sockfacts.Sock {
	if f == nil {
		return nil
	}
	if s.Cookie != 0 {
		if r, ok := f.byCookie[s.Cookie]; ok {
			return r
		}
	}
	k := normKey(s.Proto, s.Local, s.Remote)
	if f.dupKey[k] {
		return nil // several sockets share the four-tuple (reuseport listeners): ambiguous
	}
	r := f.byKey[k]
	if r == nil || (r.TimeWait != (s.State == socktab.TimeWait)) {
		return nil
	}
	return r
}

// normKey makes both sources' endpoints comparable: no port means no peer.
func normKey(p inet.Proto, local, remote netip.AddrPort) sockfacts.Key {
	if remote.Port() == 0 {
		remote = netip.AddrPort{}
	}
	return sockfacts.Key{Proto: p, Local: local, Remote: remote}
}
