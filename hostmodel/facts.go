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
	socks    []sockfacts.Sock
	byCookie map[uint64]*sockfacts.Sock
	// By four-tuple, built on the first row without a cookie (a /proc
	// table): a netlink dump gives every row one.
	keyed  bool
	byKey  map[sockfacts.Key]*sockfacts.Sock
	dupKey map[sockfacts.Key]bool
}

// IndexFacts builds the index.
func IndexFacts(socks []sockfacts.Sock) *Facts {
	f := &Facts{socks: socks, byCookie: make(map[uint64]*sockfacts.Sock, len(socks))}
	for i := range socks {
		if s := &socks[i]; s.Cookie != 0 {
			f.byCookie[s.Cookie] = s
		}
	}
	return f
}

func (f *Facts) indexKeys() {
	f.keyed = true
	f.byKey, f.dupKey = map[sockfacts.Key]*sockfacts.Sock{}, map[sockfacts.Key]bool{}
	for i := range f.socks {
		s := &f.socks[i]
		k := normKey(s.Proto, s.Local, s.Remote)
		if _, dup := f.byKey[k]; dup {
			f.dupKey[k] = true
		}
		f.byKey[k] = s
	}
}

// Lookup returns the record of s, or nil. A nil Facts has no records. It
// is not safe for concurrent use.
func (f *Facts) Lookup(s *socktab.Socket) *sockfacts.Sock {
	if f == nil {
		return nil
	}
	if s.Cookie != 0 {
		if r, ok := f.byCookie[s.Cookie]; ok {
			return r
		}
	}
	if !f.keyed {
		f.indexKeys()
	}
	k := normKey(inet.Proto(s.Proto), s.Local, s.Remote)
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

// Options returns s's options from its record, for
// socktab.Query.OptionsFrom: false when f has none.
func (f *Facts) Options(s *socktab.Socket) (socktab.KernelOptions, bool) {
	r := f.Lookup(s)
	if r == nil {
		return socktab.KernelOptions{}, false
	}
	return socktab.KernelOptions{ReuseAddr: r.ReuseAddr, ReusePort: r.ReusePort, V6Only: r.V6Only, Dev: r.Dev}, true
}
