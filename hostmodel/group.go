package hostmodel

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tuple-net/tuple/rules"
)

// BlockerGroup is blockers a person tells apart only by their peers: the
// same protocol, state, local address, uid, options, owners and reason. A
// port with 2,000 accepted connections is one group, not 2,000 lines.
type BlockerGroup struct {
	Count   int         `json:"count"`
	Kind    string      `json:"kind"` // "listener", "accepted connection", ... (singular)
	Proto   string      `json:"proto"`
	Local   string      `json:"local"`
	State   string      `json:"state"`
	UID     uint32      `json:"uid"`
	Options []string    `json:"options"`
	Owners  []OwnerInfo `json:"owners"`
	// Reason is why the group blocks, without any one socket's addresses.
	Reason string `json:"reason"`
	// TimeLeftMS is the longest time a TIME_WAIT member has left.
	TimeLeftMS int64 `json:"time_left_ms,omitempty"`
	// First is the index in Report.Blockers of the group's first member.
	First int `json:"first"`
}

// Text is the group in one line for people:
// "2,000 accepted connections on 10.0.0.1:8080 of pid 42 (tuple), uid 0 [SO_REUSEADDR]"
// (the protocol is the report's).
func (g BlockerGroup) Text() string {
	var b strings.Builder
	b.WriteString(Count(g.Count, g.Kind))
	b.WriteString(" on " + g.Local)
	if len(g.Owners) > 0 {
		b.WriteString(" of " + ownersText(g.Owners))
	} else if g.State == rules.TimeWait.String() {
		b.WriteString(" (held by the kernel)")
	}
	b.WriteString(", uid " + strconv.FormatUint(uint64(g.UID), 10))
	if len(g.Options) > 0 {
		b.WriteString(" [" + strings.Join(g.Options, " ") + "]")
	} else {
		b.WriteString(" [no reuse options]")
	}
	if g.TimeLeftMS > 0 {
		b.WriteString(fmt.Sprintf(", expiring within %d s", (g.TimeLeftMS+999)/1000))
	}
	return b.String()
}

// Count is "1 listener", "2,000 accepted connections".
func Count(n int, noun string) string {
	s := Thousands(n) + " " + noun
	if n != 1 {
		if strings.HasSuffix(noun, "entry") {
			s = strings.TrimSuffix(s, "y") + "ies"
		} else {
			s += "s"
		}
	}
	return s
}

// Thousands formats n with commas: 2000 -> "2,000".
func Thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

func ownersText(owners []OwnerInfo) string {
	const most = 3
	parts := make([]string, 0, most+1)
	for i, o := range owners {
		if i == most {
			parts = append(parts, fmt.Sprintf("%d more processes", len(owners)-most))
			break
		}
		parts = append(parts, fmt.Sprintf("pid %d (%s)", o.PID, o.Comm))
	}
	return strings.Join(parts, ", ")
}

// kindOf names what an entry is to a person.
func kindOf(sit *Situation, i int) string {
	if i < 0 || i >= len(sit.Entries) {
		return "socket"
	}
	e := &sit.Entries[i]
	switch e.Socket.State {
	case rules.Listen:
		return "listener"
	case rules.TimeWait:
		return "TIME_WAIT entry"
	case rules.Bound:
		if e.Socket.Proto == rules.UDP {
			return "unconnected socket"
		}
		return "bound-only socket"
	case rules.Connected:
		if e.accepted {
			return "accepted connection"
		}
		return "connection"
	}
	return "socket"
}

// reasonCause is a blocker's reason without the socket's own description
// ("tcp LISTEN 0.0.0.0:80 holds 0.0.0.0:80: it lacks ..." -> "it lacks ..."),
// so members of a group share it.
func reasonCause(reason string) string {
	if i := strings.Index(reason, ": "); i >= 0 && strings.Contains(reason[:i], " holds ") {
		return reason[i+2:]
	}
	return reason
}

// groupBlockers folds r.Blockers into groups, in order of first appearance.
func groupBlockers(sit *Situation, res Result, r *Report) []BlockerGroup {
	groups := []BlockerGroup{}
	index := map[string]int{}
	for bi, b := range r.Blockers {
		kind := kindOf(sit, res.Blockers[bi].Index)
		cause := reasonCause(b.Reason)
		var key strings.Builder
		fmt.Fprintf(&key, "%s|%s|%s|%s|%d|%s|%s|", kind, b.Proto, b.Local, b.State, b.UID, strings.Join(b.Options, ","), cause)
		for _, o := range b.Owners {
			fmt.Fprintf(&key, "%d,", o.PID)
		}
		k := key.String()
		gi, ok := index[k]
		if !ok {
			gi = len(groups)
			index[k] = gi
			groups = append(groups, BlockerGroup{Kind: kind, Proto: b.Proto, Local: b.Local, State: b.State, UID: b.UID,
				Options: b.Options, Owners: b.Owners, Reason: cause, First: bi})
		}
		g := &groups[gi]
		g.Count++
		g.TimeLeftMS = max(g.TimeLeftMS, b.TimeLeftMS)
	}
	return groups
}

// reuseFacts are the facts whose being unreadable can change a port verdict.
const reuseFacts = rules.FactReuseAddr | rules.FactReusePort

// alternative is one possible truth about the unread reuse options: every
// socket whose SO_REUSEADDR (SO_REUSEPORT) is unknown has it ra (rp).
type alternative struct {
	ra, rp               bool
	unknownRA, unknownRP bool
	res                  Result
}

// String says which options the alternative supposes, e.g. "if it has
// SO_REUSEPORT but not SO_REUSEADDR".
func (a alternative) String() string {
	var on, off []string
	add := func(known bool, v bool, name string) {
		if !known {
			return
		}
		if v {
			on = append(on, name)
		} else {
			off = append(off, name)
		}
	}
	add(a.unknownRA, a.ra, "SO_REUSEADDR")
	add(a.unknownRP, a.rp, "SO_REUSEPORT")
	switch {
	case len(on) == 0:
		return "if it lacks " + strings.Join(off, " and ")
	case len(off) == 0:
		return "if it has " + strings.Join(on, " and ")
	}
	return "if it has " + strings.Join(on, " and ") + " but not " + strings.Join(off, " and ")
}

// world is sit's world with the unread reuse options set as a supposes.
func (a alternative) world(sit *Situation) rules.World {
	w := sit.World()
	for i := range w.Sockets {
		s := &w.Sockets[i]
		if s.Unknown&rules.FactReuseAddr != 0 && a.unknownRA {
			s.ReuseAddr = a.ra
		}
		if s.Unknown&rules.FactReusePort != 0 && a.unknownRP {
			s.ReusePort = a.rp
		}
	}
	return w
}

// Supposing returns sit's world in which every socket whose SO_REUSEADDR
// (SO_REUSEPORT) was not read has it ra (rp): one of the worlds an
// observer without root cannot tell apart.
func (sit *Situation) Supposing(ra, rp bool) rules.World {
	return alternative{ra: ra, rp: rp, unknownRA: true, unknownRP: true}.world(sit)
}

// UnknownReason is why the reuse options of some holder of port (proto)
// were not read, or "not readable".
func (sit *Situation) UnknownReason(proto rules.Proto, port uint16) string {
	for _, e := range sit.Entries {
		s := e.Socket
		if s.Proto == proto && s.Local.Port() == port && s.Unknown&reuseFacts != 0 && s.UnknownReason != "" {
			return s.UnknownReason
		}
	}
	return "not readable"
}

// alternatives re-runs p with every combination of the unread reuse
// options of the failing plan's blockers (all such sockets of the world
// alike), so an explanation can name what it cannot tell apart. It returns
// nil when no blocker has an unread reuse option.
func alternatives(sit *Situation, p Plan, res Result) []alternative {
	var unknown rules.Fact
	for _, b := range res.Blockers {
		unknown |= b.Socket.Unknown & reuseFacts
	}
	if unknown == 0 {
		return nil
	}
	// An option the new socket lacks cannot let it share, whatever the
	// others have: only the options it sets are worth telling apart.
	uRA := unknown&rules.FactReuseAddr != 0 && p.Socket.ReuseAddr
	uRP := unknown&rules.FactReusePort != 0 && p.Socket.ReusePort
	if !uRA && !uRP {
		return nil
	}
	var out []alternative
	for _, ra := range []bool{false, true} {
		for _, rp := range []bool{false, true} {
			if (!uRA && ra) || (!uRP && rp) {
				continue
			}
			a := alternative{ra: ra, rp: rp, unknownRA: uRA, unknownRP: uRP}
			w := a.world(sit)
			a.res = sit.predict(&w, p)
			out = append(out, a)
		}
	}
	return out
}

// unknownReason is why the blockers' options are unread, from the first
// blocker that has one.
func unknownReasonOf(res Result) string {
	for _, b := range res.Blockers {
		if b.Socket.Unknown&reuseFacts != 0 && b.Socket.UnknownReason != "" {
			return b.Socket.UnknownReason
		}
	}
	return "not readable"
}

// hedge rewrites the report where unread options would make a reason
// false: each group whose reuse options are unread gets, instead of the
// reason the assumption gave, what holds whatever they are (the options the
// new socket lacks) and the reason under each alternative of the options
// it sets; when some alternative succeeds, the verdict itself is marked
// uncertain.
func hedge(sit *Situation, p Plan, res Result, r *Report, alts []alternative) {
	why := unknownReasonOf(res)
	const howToTell = "run as root to tell"
	var succeed []string
	for _, a := range alts {
		if a.res.OK() {
			succeed = append(succeed, strings.TrimPrefix(strings.TrimPrefix(a.String(), "if it has "), "if it "))
		}
	}
	if len(succeed) > 0 {
		r.Uncertain = true
		r.Explanation = fmt.Sprintf("cannot tell: the blockers' reuse options are unread (%s); it fails as %s if they lack what sharing needs, and would succeed if they have %s: %s",
			why, r.Verdict, strings.Join(succeed, ", or "), howToTell)
	}
	var lacks []string
	if !p.Socket.ReuseAddr {
		lacks = append(lacks, "SO_REUSEADDR")
	}
	if !p.Socket.ReusePort {
		lacks = append(lacks, "SO_REUSEPORT")
	}
	for gi := range r.Groups {
		g := &r.Groups[gi]
		idx := res.Blockers[g.First].Index
		if idx < 0 || idx >= len(sit.Entries) || sit.Entries[idx].Socket.Unknown&reuseFacts == 0 {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "its reuse options are unread (%s)", why)
		if len(lacks) > 0 {
			fmt.Fprintf(&b, "; the new socket lacks %s, which sharing needs on both", strings.Join(lacks, " and "))
		}
		if len(alts) == 0 {
			b.WriteString(", so it blocks whatever its options are")
			g.Reason = b.String()
			continue
		}
		var parts []string
		for _, a := range alts {
			cause := "it would share the port"
			if !a.res.OK() {
				cause = "it would share the port, but another socket blocks"
				for _, bl := range a.res.Blockers {
					if bl.Index == idx {
						cause = dropClauses(reasonCause(bl.Reason), lacks)
						break
					}
				}
			}
			if strings.TrimPrefix(a.String(), "if ") == cause {
				cause = "no reuse option lets them share"
			}
			part := a.String() + ", " + cause
			if !slices.Contains(parts, part) {
				parts = append(parts, part)
			}
		}
		fmt.Fprintf(&b, "; so one of: %s; %s", strings.Join(parts, "; "), howToTell)
		g.Reason = b.String()
	}
}

// dropClauses removes from a rules reason ("A, and B") the clauses about
// options in names, which the caller has already said the new socket lacks.
func dropClauses(cause string, names []string) string {
	var keep []string
	for _, c := range strings.Split(cause, ", and ") {
		about := false
		for _, n := range names {
			if strings.Contains(c, n) {
				about = true
			}
		}
		if !about {
			keep = append(keep, c)
		}
	}
	if len(keep) == 0 {
		return cause
	}
	return strings.Join(keep, ", and ")
}

// CollapseAssumptions folds assumptions that differ only in the socket
// they are about ("assumed SO_REUSEPORT off on tcp 10.0.0.1:8080->... (why)")
// into one line with a count, in order of first appearance.
func CollapseAssumptions(as []string) []string {
	type item struct {
		head, tail, one string
		n               int
	}
	var items []*item
	byKey := map[string]*item{}
	for _, a := range as {
		head, rest, ok := strings.Cut(a, " on ")
		if !ok || !strings.HasPrefix(a, "assumed ") {
			if it := byKey[a]; it != nil {
				it.n++
				continue
			}
			it := &item{one: a, n: 1}
			byKey[a] = it
			items = append(items, it)
			continue
		}
		tail := ""
		if i := strings.Index(rest, " ("); i >= 0 {
			tail = rest[i:]
		}
		k := head + "\x00" + tail
		if it := byKey[k]; it != nil {
			it.n++
			continue
		}
		it := &item{head: head, tail: tail, one: a, n: 1}
		byKey[k] = it
		items = append(items, it)
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		if it.n == 1 || it.head == "" {
			out = append(out, it.one)
			continue
		}
		out = append(out, fmt.Sprintf("%s on %s sockets%s", it.head, Thousands(it.n), it.tail))
	}
	return out
}
