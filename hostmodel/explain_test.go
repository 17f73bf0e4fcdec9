package hostmodel

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

// toyModel is a small stand-in for rules.Predict with the rules the fix
// search depends on, so these tests check the explanation and fix logic
// alone (the real model is checked against the kernel in internal/cli).
func toyModel(w rules.World, s rules.Socket, op rules.Op) rules.Outcome {
	out := rules.Outcome{After: s, Candidates: -1}
	switch op.Kind {
	case rules.OpBind:
		if op.Addr.Port() != 0 && op.Addr.Port() < w.Host.UnprivilegedPortStart && !s.CanBindPrivileged {
			out.Err = syscall.EACCES
			return out
		}
		for i, o := range w.Sockets {
			if o.Local.Port() != op.Addr.Port() || (o.Local.Addr() != op.Addr.Addr() && !o.Local.Addr().IsUnspecified() && !op.Addr.Addr().IsUnspecified()) {
				continue
			}
			if s.ReusePort && o.ReusePort && (o.State == rules.TimeWait || s.UID == o.UID) ||
				s.ReuseAddr && o.ReuseAddr && o.State != rules.Listen {
				continue
			}
			out.Blockers = append(out.Blockers, rules.Blocker{Index: i, Socket: o, Reason: "holds the port"})
		}
		if len(out.Blockers) > 0 {
			out.Err = syscall.EADDRINUSE
			return out
		}
		out.After.Local, out.After.State = op.Addr, rules.Bound
	case rules.OpConnect:
		if s.State != rules.Bound {
			out.After.Local = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 40000)
			break
		}
		for i, o := range w.Sockets {
			if o.Local == s.Local && o.Remote == op.Addr {
				out.Blockers = append(out.Blockers, rules.Blocker{Index: i, Socket: o, Reason: "same four-tuple"})
			}
		}
		if len(out.Blockers) > 0 {
			out.Err = syscall.EADDRNOTAVAIL
		}
	}
	return out
}

var ap = netip.MustParseAddrPort

func entry(s rules.Socket, owners ...socktab.Owner) Entry { return Entry{Socket: s, Owners: owners} }

// editText spells an edit for the assertions: its options and uid.
func editText(e Edit) string {
	var out []string
	for _, o := range e.Options {
		out = append(out, o.String())
	}
	if e.SetUID {
		out = append(out, fmt.Sprintf("uid %d", e.UID))
	}
	return strings.Join(out, " ")
}

func fixText(r *Report) string {
	var b strings.Builder
	for _, f := range r.Fixes {
		b.WriteString(f.Change + " | " + editText(f.Edit) + "\n")
	}
	return b.String()
}

func TestExplainDoubleSourcePort(t *testing.T) {
	first := rules.Socket{ID: "first", Proto: inet.TCP, Family: inet.IPv4, State: rules.Connected,
		Local: ap("127.0.0.1:12345"), Remote: ap("10.0.0.2:80"), UID: 1000}
	sit := &Situation{Host: rules.DefaultHost(), Model: toyModel,
		Entries: []Entry{entry(first, socktab.Owner{PID: 42, Comm: "nc", FD: 3})}}
	newSock := rules.Socket{Proto: inet.TCP, Family: inet.IPv4, UID: 1000}
	plan := func(dst string) Plan {
		return Plan{Socket: newSock, Ops: []rules.Op{{Kind: rules.OpBind, Addr: ap("127.0.0.1:12345")}, {Kind: rules.OpConnect, Addr: ap(dst)}}}
	}

	r := Explain(context.Background(), sit, plan("10.0.0.3:80"))
	if r.OK() || r.Verdict != "EADDRINUSE" || r.FailedOp != "bind" || len(r.Blockers) != 1 {
		t.Fatalf("report: %+v", r)
	}
	b := r.Blockers[0]
	if b.Local != "127.0.0.1:12345" || b.Remote != "10.0.0.2:80" || b.State != "CONNECTED" || b.OwnersText() != "pid 42 (nc)" {
		t.Errorf("blocker: %+v", b)
	}
	fixes := fixText(r)
	for _, want := range []string{
		"set SO_REUSEPORT on the new socket and on first [pid 42 (nc)] (its program must set it before bind) | SO_REUSEPORT",
		"set SO_REUSEADDR on the new socket and on first [pid 42 (nc)]",
		"let connect() pick",
		"use port 12346 instead",
	} {
		if !strings.Contains(fixes, want) {
			t.Errorf("fixes lack %q:\n%s", want, fixes)
		}
	}

	// To the same destination, sharing the port cannot work: the four-tuple
	// would repeat. Fixes the model rejects are not offered.
	r = Explain(context.Background(), sit, plan("10.0.0.2:80"))
	if fixes := fixText(r); strings.Contains(fixes, "SO_REUSE") || !strings.Contains(fixes, "use port 12346") {
		t.Errorf("same destination: fixes:\n%s", fixes)
	}
}

func TestExplainReusePortOtherUID(t *testing.T) {
	ln := rules.Socket{ID: "ln", Proto: inet.TCP, Family: inet.IPv4, State: rules.Listen, Local: ap("0.0.0.0:8080"), ReusePort: true, UID: 1000}
	sit := &Situation{Host: rules.DefaultHost(), Model: toyModel, Entries: []Entry{entry(ln)}}
	p := Plan{Socket: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, UID: 0, ReusePort: true},
		Ops: []rules.Op{{Kind: rules.OpBind, Addr: ap("0.0.0.0:8080")}, {Kind: rules.OpListen}}}
	r := Explain(context.Background(), sit, p)
	if r.Verdict != "EADDRINUSE" {
		t.Fatalf("verdict %s", r.Verdict)
	}
	if fixes := fixText(r); !strings.Contains(fixes, "run it as uid 1000") || !strings.Contains(fixes, "| SO_REUSEPORT uid 1000") {
		t.Errorf("fixes:\n%s", fixes)
	}
	if got := r.Blockers[0].OwnersText(); !strings.Contains(got, "no process found") {
		t.Errorf("owners of a socket without processes: %q", got)
	}
}

func TestExplainTimeWait(t *testing.T) {
	tw := rules.Socket{ID: "tw", Proto: inet.TCP, Family: inet.IPv4, State: rules.TimeWait, ReuseAddr: true,
		Local: ap("127.0.0.1:12345"), Remote: ap("127.0.0.2:80")}
	sit := &Situation{Host: rules.DefaultHost(), Model: toyModel, Entries: []Entry{{Socket: tw, TimeLeft: 41500 * time.Millisecond}}}
	p := Plan{Socket: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, ReuseAddr: true},
		Ops: []rules.Op{{Kind: rules.OpBind, Addr: ap("127.0.0.1:12345")}, {Kind: rules.OpConnect, Addr: ap("127.0.0.2:80")}}}
	r := Explain(context.Background(), sit, p)
	if r.Verdict != "EADDRNOTAVAIL" || r.FailedOp != "connect" {
		t.Fatalf("verdict %s at %s", r.Verdict, r.FailedOp)
	}
	if len(r.Fixes) == 0 || r.Fixes[0].Change != "wait 42 s until the TIME_WAIT entry expires" {
		t.Errorf("fixes:\n%s", fixText(r))
	}
	if got := r.Blockers[0].OwnersText(); !strings.Contains(got, "kernel holds TIME_WAIT") {
		t.Errorf("owners of TIME_WAIT: %q", got)
	}
}

func TestExplainPrivileged(t *testing.T) {
	sit := &Situation{Host: rules.DefaultHost(), Model: toyModel}
	p := Plan{Socket: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, UID: 1000},
		Ops: []rules.Op{{Kind: rules.OpBind, Addr: ap("127.0.0.1:80")}}}
	r := Explain(context.Background(), sit, p)
	fixes := fixText(r)
	if r.Verdict != "EACCES" || !strings.Contains(fixes, "CAP_NET_BIND_SERVICE") || strings.Contains(fixes, "SO_REUSE") {
		t.Errorf("verdict %s, fixes:\n%s", r.Verdict, fixes)
	}
	ok := Explain(context.Background(), sit, Plan{Socket: p.Socket, Ops: []rules.Op{{Kind: rules.OpBind, Addr: ap("127.0.0.1:8080")}}})
	if !ok.OK() || ok.Port != 8080 || len(ok.Fixes) != 0 || len(ok.Blockers) != 0 {
		t.Errorf("ok report: %+v", ok)
	}
}

func TestExplainRangeExhausted(t *testing.T) {
	// A model that runs out of ports when the range has fewer than 10.
	model := func(w rules.World, s rules.Socket, op rules.Op) rules.Outcome {
		out := rules.Outcome{After: s, Candidates: w.Host.EphemeralRange.Size()}
		if out.Candidates < 10 {
			out.Candidates, out.Err = 0, syscall.EADDRNOTAVAIL
		}
		return out
	}
	h := rules.DefaultHost()
	h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40003}
	sit := &Situation{Host: h, Model: model}
	p := Plan{Socket: rules.Socket{Proto: inet.TCP, Family: inet.IPv4}, Ops: []rules.Op{{Kind: rules.OpConnect, Addr: ap("127.0.0.1:80")}}}
	r := Explain(context.Background(), sit, p)
	if fixes := fixText(r); !strings.Contains(fixes, "widen net.ipv4.ip_local_port_range (now 40000-40003)") {
		t.Errorf("fixes:\n%s", fixes)
	}
}
