package reusegroup

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/sockfacts"
	"github.com/tuple-net/tuple/socktab"
)

var on = socktab.Bool{Known: true, Value: true}

func listener(cookie uint64, addr string, uid uint32, rp socktab.Bool) socktab.Socket {
	return socktab.Socket{Proto: inet.TCP, State: socktab.Listen, Local: netip.MustParseAddrPort(addr),
		UID: uid, Cookie: cookie, Options: socktab.Options{ReusePort: rp}}
}

// summary is what a test compares: per group its header and the members'
// cookies by index.
type summary struct {
	Local   string
	Known   bool
	ID      uint32
	Prog    string
	Size    int
	Cookies []uint64
	Indices []int
}

func summarize(gs []Group) []summary {
	var out []summary
	for _, g := range gs {
		s := summary{Local: g.Local.String(), Known: g.Known, ID: g.ID, Size: g.Size}
		if g.Prog != nil {
			s.Prog = g.Prog.Kind()
		}
		for _, m := range g.Members {
			s.Cookies = append(s.Cookies, m.Socket.Cookie)
			s.Indices = append(s.Indices, m.Index)
		}
		out = append(out, s)
	}
	return out
}

func TestBuildFromFacts(t *testing.T) {
	socks := []socktab.Socket{
		listener(11, "127.0.0.1:80", 0, on),
		listener(12, "127.0.0.1:80", 0, on),
		listener(13, "127.0.0.1:80", 0, on),
		listener(21, "10.0.0.1:80", 0, on),
		listener(0, "10.0.0.2:80", 0, on), // no cookie (procfs): not joined
	}
	facts := []sockfacts.Member{
		{Proto: inet.TCP, Cookie: 11, GroupID: 5, Index: 2, Members: 3, Attached: true, Prog: sockfacts.Program{Type: 21, AttachType: 40, ID: 9}},
		{Proto: inet.TCP, Cookie: 12, GroupID: 5, Index: 0, Members: 3, Attached: true, Prog: sockfacts.Program{Type: 21, AttachType: 40, ID: 9}},
		{Proto: inet.TCP, Cookie: 13, GroupID: 5, Index: -1, Members: 3, Attached: true, Prog: sockfacts.Program{Type: 21, AttachType: 40, ID: 9}},
		{Proto: inet.TCP, Cookie: 21, GroupID: 6, Index: 0, Members: 1},
	}
	want := []summary{
		{Local: "127.0.0.1:80", Known: true, ID: 5, Prog: "sk_reuseport/migrate", Size: 3, Cookies: []uint64{12, 11, 13}, Indices: []int{0, 2, -1}},
		{Local: "10.0.0.1:80", Known: true, ID: 6, Size: 1, Cookies: []uint64{21}, Indices: []int{0}},
	}
	if d := cmp.Diff(want, summarize(Build(socks, facts, nil))); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
}

func TestBuildFromTableWhenFactsUnknown(t *testing.T) {
	off := socktab.Bool{Known: true}
	unknown := socktab.Bool{Reason: "not root"}
	socks := []socktab.Socket{
		listener(1, "0.0.0.0:80", 0, on),
		listener(2, "0.0.0.0:80", 0, on),
		listener(3, "0.0.0.0:80", 1000, on),   // another uid: another group
		listener(4, "0.0.0.0:81", 0, off),     // no SO_REUSEPORT
		listener(5, "0.0.0.0:82", 0, unknown), // alone, options unknown: no proof
		listener(6, "0.0.0.0:83", 0, unknown), // two listeners on one port
		listener(7, "0.0.0.0:83", 0, unknown), // are a group whatever we read
		{Proto: inet.TCP, State: socktab.Established, Local: netip.MustParseAddrPort("0.0.0.0:80"), Options: socktab.Options{ReusePort: on}},
	}
	got := Build(socks, nil, errors.New("BPF socket iterator not available"))
	want := []summary{
		{Local: "0.0.0.0:80", Size: 2, Cookies: []uint64{1, 2}, Indices: []int{-1, -1}},
		{Local: "0.0.0.0:80", Size: 1, Cookies: []uint64{3}, Indices: []int{-1}},
		{Local: "0.0.0.0:83", Size: 2, Cookies: []uint64{6, 7}, Indices: []int{-1, -1}},
	}
	if d := cmp.Diff(want, summarize(got)); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
	for _, g := range got {
		if g.Reason != "unknown: BPF socket iterator not available" {
			t.Errorf("reason %q", g.Reason)
		}
	}
}
