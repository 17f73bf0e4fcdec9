package hostmodel

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/sockopt"
)

// Report is the answer to "would this work, and if not, why and what would":
// what `tuple why` prints and --json encodes.
type Report struct {
	Plan        string `json:"plan"`    // the syscalls judged, e.g. "bind 127.0.0.1:80, listen"
	Verdict     string `json:"verdict"` // "ok" or the errno's name
	FailedOp    string `json:"failed_op,omitempty"`
	Rule        string `json:"rule,omitempty"`
	Explanation string `json:"explanation"`
	Port        uint16 `json:"port,omitempty"` // the port the kernel would pick, when known
	// Uncertain: the verdict rests on facts that could not be read, and
	// some value of them would change it (Explanation says which).
	Uncertain bool `json:"uncertain,omitempty"`
	// Blockers is every blocking socket; Groups folds them for people.
	Blockers    []BlockerInfo  `json:"blockers"`
	Groups      []BlockerGroup `json:"groups"`
	Fixes       []Fix          `json:"fixes"`
	Assumptions []string       `json:"assumptions"`
	Notes       []string       `json:"notes,omitempty"`

	outcome rules.Outcome
}

// OK reports whether the plan is predicted to succeed.
func (r *Report) OK() bool { return r.outcome.OK() }

// Outcome is the model's outcome behind the report.
func (r *Report) Outcome() rules.Outcome { return r.outcome }

// BlockerInfo is one existing socket that causes the failure.
type BlockerInfo struct {
	Proto    string        `json:"proto"`
	Local    string        `json:"local"`
	Remote   string        `json:"remote,omitempty"`
	State    string        `json:"state"`
	UID      uint32        `json:"uid"`
	Options  []string      `json:"options"`       // options that are on, e.g. SO_REUSEADDR; "SO_REUSEPORT?" when unreadable
	Dev      int           `json:"dev,omitempty"` // bound device ifindex
	TimeLeft time.Duration `json:"-"`             // TIME_WAIT: until it expires
	// TimeLeftMS is TimeLeft in milliseconds, for JSON.
	TimeLeftMS int64       `json:"time_left_ms,omitempty"`
	Owners     []OwnerInfo `json:"owners"`            // processes holding it; none for TIME_WAIT
	Assumed    []string    `json:"assumed,omitempty"` // facts not observed and what was assumed
	Reason     string      `json:"reason"`            // why it blocks, in plain words
}

// OwnerInfo is a process holding a blocking socket.
type OwnerInfo struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
}

// Fix is a change the model predicts would make the plan succeed.
type Fix struct {
	Change string `json:"change"` // what to do, in plain words
	Edit   Edit   `json:"-"`      // what changes on the new socket, for each command to spell in its flags

	others bool // the fix also changes existing sockets (their programs)
}

// Edit is what a fix changes on the new socket, typed, so each command can
// spell it in its own flags.
type Edit struct {
	Local      netip.AddrPort // new bind address (connect: source); invalid for none
	BindNoPort bool           // bind the address only; connect() picks the port
	Options    []sockopt.ID   // options to set, e.g. sockopt.ReusePort
	SetUID     bool           // run as UID
	UID        uint32
	NoBind     bool // drop the explicit bind: connect() picks address and port
}

func (e Edit) equal(o Edit) bool {
	return e.Local == o.Local && e.BindNoPort == o.BindNoPort && slices.Equal(e.Options, o.Options) &&
		e.SetUID == o.SetUID && e.UID == o.UID && e.NoBind == o.NoBind
}

// newFix is a fix that changes the new socket as e says.
func newFix(change string, e Edit) Fix {
	return Fix{Change: change, Edit: e}
}

// Explain predicts p in sit and explains the outcome: blockers with their
// owners, the reason, the assumptions it rests on, and the fixes that the
// model says would work. Owners not read yet are looked up for the
// blockers (loadOwners); when that fails the report says so in its notes.
func Explain(ctx context.Context, sit *Situation, p Plan) *Report {
	res := sit.predict(nil, p)
	if !res.OK() {
		var idx []int
		for _, b := range res.Blockers {
			if b.Index >= 0 && b.Index < len(sit.Entries) {
				idx = append(idx, b.Index)
			}
		}
		if err := sit.loadOwners(ctx, idx); err != nil {
			sit.Notes = append(sit.Notes, err.Error())
		}
	}
	r := &Report{
		Plan:        p.String(),
		Verdict:     res.ErrName(),
		Rule:        res.Rule,
		Explanation: res.Why,
		Blockers:    []BlockerInfo{},
		Groups:      []BlockerGroup{},
		Fixes:       []Fix{},
		Assumptions: slices.Clone(res.Assumptions),
		Notes:       sit.Notes,
		outcome:     res.Outcome,
	}
	if r.Assumptions == nil {
		r.Assumptions = []string{}
	}
	if res.OK() {
		if res.StandIn == 0 {
			r.Port = res.After.Local.Port()
		}
		if r.Explanation == "" {
			r.Explanation = "no existing socket conflicts with it"
		}
		return r
	}
	r.FailedOp = p.Ops[res.Failed].Kind.String()
	for _, b := range res.Blockers {
		r.Blockers = append(r.Blockers, blockerInfo(sit, b))
	}
	if r.Explanation == "" {
		r.Explanation = fmt.Sprintf("%s fails with %s", r.FailedOp, r.Verdict)
	}
	r.Groups = groupBlockers(sit, res, r)
	alts := alternatives(sit, p, res)
	hedge(sit, p, res, r, alts)
	r.Fixes = Fixes(sit, p, res)
	if len(alts) > 0 {
		// A fix found against assumed options may not be needed, or not
		// enough; say so rather than rest on the assumption.
		for i := range r.Fixes {
			if !fixHoldsInAll(sit, p, r.Fixes[i], alts) {
				r.Fixes[i].Change += " (if the unread options are as assumed)"
			}
		}
	}
	return r
}

func blockerInfo(sit *Situation, b rules.Blocker) BlockerInfo {
	s := b.Socket
	bi := BlockerInfo{
		Proto:   s.Proto.String(),
		Local:   s.Local.String(),
		State:   s.State.String(),
		UID:     s.UID,
		Options: optionNames(s),
		Dev:     s.Dev,
		Owners:  []OwnerInfo{},
		Reason:  b.Reason,
	}
	if s.Remote.Port() != 0 {
		bi.Remote = s.Remote.String()
	}
	if b.Index >= 0 && b.Index < len(sit.Entries) {
		e := sit.Entries[b.Index]
		bi.TimeLeft = e.TimeLeft
		bi.TimeLeftMS = e.TimeLeft.Milliseconds()
		bi.Assumed = e.Assumed
		for _, o := range e.Owners {
			if !slices.ContainsFunc(bi.Owners, func(x OwnerInfo) bool { return x.PID == o.PID }) {
				bi.Owners = append(bi.Owners, OwnerInfo{PID: o.PID, Comm: o.Comm})
			}
		}
	}
	return bi
}

// optionNames lists the options that are on; an option that could not be
// read is listed with "?" (its assumed value is in Assumed).
func optionNames(s rules.Socket) []string {
	out := []string{}
	add := func(on bool, f rules.Fact, name string) {
		switch {
		case s.Unknown&f != 0:
			out = append(out, name+"?")
		case on:
			out = append(out, name)
		}
	}
	add(s.ReuseAddr, rules.FactReuseAddr, "SO_REUSEADDR")
	add(s.ReusePort, rules.FactReusePort, "SO_REUSEPORT")
	if s.Family == inet.IPv6 {
		add(s.V6Only, rules.FactV6Only, "IPV6_V6ONLY")
	}
	if s.Dev != 0 {
		out = append(out, fmt.Sprintf("SO_BINDTODEVICE(%d)", s.Dev))
	}
	return out
}

// OwnersText is "pid 123 (nc), pid 456 (nc)", or what to say when a socket
// has no process (TIME_WAIT entries belong to the kernel).
func (b BlockerInfo) OwnersText() string {
	if len(b.Owners) == 0 {
		if b.State == rules.TimeWait.String() {
			return "no process (the kernel holds TIME_WAIT entries)"
		}
		return "no process found (not readable, or held only by the kernel)"
	}
	parts := make([]string, len(b.Owners))
	for i, o := range b.Owners {
		parts[i] = fmt.Sprintf("pid %d (%s)", o.PID, o.Comm)
	}
	return strings.Join(parts, ", ")
}

// ownersOf names the sockets at idx for a fix's text, grouped by owner so
// the text stays short however many sockets there are: "4 sockets of pid
// 42 (tuple)" or, for one socket, its address and owner.
func ownersOf(sit *Situation, idx []int) string {
	if len(idx) == 1 {
		e := sit.Entries[idx[0]]
		who := "its owner"
		if len(e.Owners) > 0 {
			who = ownersText(ownerInfos(e))
		}
		return fmt.Sprintf("%s [%s]", e.Socket.ID, who)
	}
	var order []string
	count := map[string]int{}
	for _, i := range idx {
		who := "no readable owner"
		if e := sit.Entries[i]; len(e.Owners) > 0 {
			who = ownersText(ownerInfos(e))
		}
		if count[who] == 0 {
			order = append(order, who)
		}
		count[who]++
	}
	parts := make([]string, 0, len(order))
	for i, who := range order {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("%d more owners", len(order)-3))
			break
		}
		parts = append(parts, Count(count[who], "socket")+" of "+who)
	}
	return strings.Join(parts, "; ")
}

// ownerInfos lists an entry's processes once each.
func ownerInfos(e Entry) []OwnerInfo {
	var out []OwnerInfo
	for _, o := range e.Owners {
		if !slices.ContainsFunc(out, func(x OwnerInfo) bool { return x.PID == o.PID }) {
			out = append(out, OwnerInfo{PID: o.PID, Comm: o.Comm})
		}
	}
	return out
}
