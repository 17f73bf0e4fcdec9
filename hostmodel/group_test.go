package hostmodel

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

// busyPort is 4 reuseport listeners of one process and 2,000 connections
// accepted from them on 10.0.0.1:8080.
func busyPort() *Situation {
	host := rules.DefaultHost()
	host.Local = append(host.Local, netip.MustParsePrefix("10.0.0.1/32"))
	sit := &Situation{Host: host}
	owner := socktab.Owner{PID: 42, Comm: "tuple", FD: 3}
	for i := range 4 {
		sit.Entries = append(sit.Entries, Entry{Socket: rules.Socket{ID: fmt.Sprintf("l%d", i), Proto: inet.TCP, Family: inet.IPv4,
			State: rules.Listen, Local: ap("10.0.0.1:8080"), ReuseAddr: true, ReusePort: true}, Owners: []socktab.Owner{owner}})
	}
	for i := range 2000 {
		sit.Entries = append(sit.Entries, Entry{Socket: rules.Socket{ID: fmt.Sprintf("c%d", i), Proto: inet.TCP, Family: inet.IPv4,
			State: rules.Connected, Local: ap("10.0.0.1:8080"), Remote: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(30000+i)),
			ReuseAddr: true, ReusePort: true}, Owners: []socktab.Owner{owner}, accepted: true})
	}
	sit.ownersRead = true
	return sit
}

func TestExplainGroupsBlockers(t *testing.T) {
	sit := busyPort()
	p := Plan{Socket: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, UID: 1000},
		Ops: []rules.Op{{Kind: rules.OpBind, Addr: ap("0.0.0.0:8080")}}}
	r := Explain(context.Background(), sit, p)
	if r.OK() || len(r.Blockers) != 2004 {
		t.Fatalf("verdict %s with %d blockers, want EADDRINUSE with all 2,004", r.Verdict, len(r.Blockers))
	}
	if len(r.Groups) != 2 || r.Groups[0].Count != 4 || r.Groups[1].Count != 2000 {
		t.Fatalf("groups %+v, want the 4 listeners and the 2,000 connections", r.Groups)
	}
	if got, want := r.Groups[1].Text(), "2,000 accepted connections on 10.0.0.1:8080 of pid 42 (tuple), uid 0 [SO_REUSEADDR SO_REUSEPORT]"; got != want {
		t.Errorf("group text %q, want %q", got, want)
	}
	wantText(t, "the connections' reason", r.Groups[1].Reason, "the new socket lacks SO_REUSEADDR and SO_REUSEPORT")
	for _, f := range r.Fixes {
		if len(f.Change) > 300 {
			t.Errorf("fix of %d bytes: %.200q...", len(f.Change), f.Change)
		}
	}
}

// TestExplainUnreadOtherUID: another uid's reuseport listener whose options
// this user cannot read. The explanation names the uid rule as one
// possibility, asserts nothing about the unread options, and marks the fix
// that rests on them.
func TestExplainUnreadOtherUID(t *testing.T) {
	sit := &Situation{Host: rules.DefaultHost(), ownersRead: true, Entries: []Entry{{Socket: rules.Socket{ID: "l", Proto: inet.TCP,
		Family: inet.IPv4, State: rules.Listen, Local: ap("127.0.0.1:8080"), UID: 0,
		Unknown: rules.FactReuseAddr | rules.FactReusePort, UnknownReason: "descriptor not readable"}}}}
	p := Plan{Socket: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, UID: 65534, ReusePort: true},
		Ops: []rules.Op{{Kind: rules.OpBind, Addr: ap("127.0.0.1:8080")}}}
	r := Explain(context.Background(), sit, p)
	if r.OK() || r.Uncertain {
		t.Fatalf("verdict %s (uncertain %v): with any options another uid's listener blocks", r.Verdict, r.Uncertain)
	}
	wantText(t, "reason", r.Groups[0].Reason, "its reuse options are unread (descriptor not readable); the new socket lacks SO_REUSEADDR, which sharing needs on both; so one of: if it lacks SO_REUSEPORT, no reuse option lets them share; if it has SO_REUSEPORT, SO_REUSEPORT needs the same uid (new socket 65534, owner 0); run as root to tell")
	// With SO_REUSEADDR on the new socket too, the unread SO_REUSEADDR of
	// a listener still cannot help; a bound-only holder's could: then
	// the verdict itself is uncertain.
	sit.Entries[0].Socket.State = rules.Bound
	sit.indexed = nil
	p.Socket.ReuseAddr = true
	r = Explain(context.Background(), sit, p)
	if r.OK() || !r.Uncertain {
		t.Errorf("bound holder with unread options: verdict %s, uncertain %v", r.Verdict, r.Uncertain)
	}
	wantText(t, "bound holder with unread options: explanation", r.Explanation, "cannot tell: the blockers' reuse options are unread (descriptor not readable); it fails as EADDRINUSE if they lack what sharing needs, and would succeed if they have SO_REUSEADDR but not SO_REUSEPORT, or SO_REUSEADDR and SO_REUSEPORT: run as root to tell")
}

func TestCollapseAssumptions(t *testing.T) {
	in := []string{
		"assumed SO_REUSEPORT off on tcp 10.0.0.1:8080 (unreadable: x)",
		"assumed SO_REUSEPORT off on tcp 10.0.0.1:8080->10.0.0.1:1 (unreadable: x)",
		"assumed SO_REUSEADDR off on tcp 10.0.0.1:8080 (unreadable: x)",
		"something else",
	}
	got := CollapseAssumptions(in)
	want := []string{"assumed SO_REUSEPORT off on 2 sockets (unreadable: x)", in[2], in[3]}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q, want %q", got, want)
	}
	if Thousands(2004) != "2,004" || Thousands(999) != "999" || Thousands(1234567) != "1,234,567" {
		t.Errorf("Thousands: %s %s %s", Thousands(2004), Thousands(999), Thousands(1234567))
	}
	if Count(1, "TIME_WAIT entry") != "1 TIME_WAIT entry" || Count(3, "TIME_WAIT entry") != "3 TIME_WAIT entries" {
		t.Errorf("Count: %s, %s", Count(1, "TIME_WAIT entry"), Count(3, "TIME_WAIT entry"))
	}
}
