package hostmodel

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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

// wantText compares a whole text the report gives with want.
func wantText(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s (-want +got):\n%s", what, cmp.Diff(want, got))
	}
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
	wantText(t, "fixes", fixText(r), "set SO_REUSEPORT on the new socket and on first [pid 42 (nc)] (its program must set it before bind) | SO_REUSEPORT\nset SO_REUSEADDR on the new socket and on first [pid 42 (nc)] (its program must set it before bind) | SO_REUSEADDR\nbind only the source address and let connect() pick the port (IP_BIND_ADDRESS_NO_PORT) | \nuse port 12346 instead (the nearest one that works) | \nbind address 127.0.0.2 instead | \n")

	// To the same destination, sharing the port cannot work: the four-tuple
	// would repeat. Fixes the model rejects are not offered.
	r = Explain(context.Background(), sit, plan("10.0.0.2:80"))
	wantText(t, "same destination: fixes", fixText(r), "bind only the source address and let connect() pick the port (IP_BIND_ADDRESS_NO_PORT) | \nuse port 12346 instead (the nearest one that works) | \nbind address 127.0.0.2 instead | \n")
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
	wantText(t, "fixes", fixText(r), "set SO_REUSEPORT on the new socket and run it as uid 1000, the owner's (SO_REUSEPORT shares a port only between sockets of one user) | SO_REUSEPORT uid 1000\nuse port 8081 instead (the nearest one that works) | \n")
	wantText(t, "owners of a socket without processes", r.Blockers[0].OwnersText(), "no process found (not readable, or held only by the kernel)")
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
	wantText(t, "owners of TIME_WAIT", r.Blockers[0].OwnersText(), "no process (the kernel holds TIME_WAIT entries)")
}

func TestExplainPrivileged(t *testing.T) {
	sit := &Situation{Host: rules.DefaultHost(), Model: toyModel}
	p := Plan{Socket: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, UID: 1000},
		Ops: []rules.Op{{Kind: rules.OpBind, Addr: ap("127.0.0.1:80")}}}
	r := Explain(context.Background(), sit, p)
	if r.Verdict != "EACCES" {
		t.Errorf("verdict %s, want EACCES", r.Verdict)
	}
	wantText(t, "fixes", fixText(r), "run with CAP_NET_BIND_SERVICE (or as root) to bind a port below net.ipv4.ip_unprivileged_port_start | \n")
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
	wantText(t, "fixes", fixText(r), "widen net.ipv4.ip_local_port_range (now 40000-40003), e.g. sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\" | \n")
}

// bind(ADDR:0) then connect(): the kernel takes one of many ports at
// random, so the report names no port as the one it will take ("would
// succeed (port 32768)" read as a fact) and says which one the connect was
// judged with.
func TestExplainBindZeroThenConnect(t *testing.T) {
	sit := &Situation{Host: rules.DefaultHost()}
	p := Plan{Socket: rules.Socket{Proto: inet.TCP, Family: inet.IPv4},
		Ops: []rules.Op{{Kind: rules.OpBind, Addr: ap("127.0.0.1:0")}, {Kind: rules.OpConnect, Addr: ap("10.0.0.2:80"), Source: netip.MustParseAddr("127.0.0.1")}}}
	r := Explain(context.Background(), sit, p)
	if !r.OK() || r.Port != 0 {
		t.Fatalf("report: verdict %s, port %d; want ok and no port named", r.Verdict, r.Port)
	}
	if len(r.Assumptions) == 0 || !strings.HasPrefix(r.Assumptions[len(r.Assumptions)-1], "bind(0) takes one of ") {
		t.Errorf("assumptions %q: want the port bind(0) was judged with", r.Assumptions)
	}
	// A port bind() names is the socket's for sure.
	p.Ops[0].Addr = ap("127.0.0.1:5000")
	if r := Explain(context.Background(), sit, p); !r.OK() || r.Port != 5000 {
		t.Errorf("bind 127.0.0.1:5000 then connect: verdict %s, port %d; want ok, port 5000", r.Verdict, r.Port)
	}
}
