package socktab

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tuple-net/tuple/inet"
)

// Filter is an ss filter expression: port and address conditions joined by
// and, or, not and parentheses (`sport = :8080`, `dport != :22`,
// `src 127.0.0.1`, `dst 10.0.0.0/8:443`), plus `state NAME` terms. It runs
// in the kernel as inet_diag bytecode, the program ss sends, and in user
// space with Match where no kernel filter applies (procfs).
type Filter struct {
	// States are the states named by top-level `state` terms (0: none
	// named). As in ss they select through the request's state mask, so
	// they must be joined to the rest with and.
	States StateSet
	expr   *node // nil: every socket
}

// condKind is what a condition compares.
type condKind uint8

const (
	condSport condKind = iota + 1
	condDport
	condSrc
	condDst
)

// cmpOp is a port comparison.
type cmpOp uint8

const (
	cmpEq cmpOp = iota + 1
	cmpNe
	cmpGe
	cmpLe
	cmpGt
	cmpLt
)

type nodeOp uint8

const (
	opCond nodeOp = iota + 1
	opAnd
	opOr
	opNot
)

// node is one node of the expression tree.
type node struct {
	op   nodeOp
	a, b *node
	// A condition (op == opCond).
	kind   condKind
	cmp    cmpOp
	port   int          // -1: any port (address conditions)
	prefix netip.Prefix // address conditions; invalid: any address
}

// ssStates are ss's state names and groups beside the kernel's own.
var ssStates = map[string]StateSet{
	"all":          AllStates,
	"connected":    AllStates &^ States(Listen, Close, BoundInactive, NewSynRecv),
	"synchronized": AllStates &^ States(Listen, Close, BoundInactive, NewSynRecv, SynSent),
	"bucket":       States(SynRecv, TimeWait, NewSynRecv),
	"big":          AllStates &^ States(SynRecv, TimeWait, NewSynRecv),
	"listening":    States(Listen),
	"closed":       States(Close),
	"estab":        States(Established),
}

// errFilter prefixes every parse error.
var errFilter = errors.New("filter expression")

// ParseFilter parses an ss filter expression given as command-line words
// (they are joined with spaces, so `sport = :80` may be one word or three).
// It is pure; the empty expression selects every socket.
func ParseFilter(args []string) (*Filter, error) {
	p := &parser{toks: tokenize(strings.Join(args, " "))}
	f := &Filter{}
	if len(p.toks) == 0 {
		return f, nil
	}
	e, err := p.or(f, true)
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, fmt.Errorf("%w: unexpected %q", errFilter, p.toks[p.i])
	}
	f.expr = e
	return f, nil
}

// tokenize splits on blanks, and around parentheses and a leading "!".
func tokenize(s string) []string {
	var out []string
	for _, w := range strings.Fields(s) {
		for w != "" {
			switch {
			case w[0] == '(' || w[0] == ')':
				out = append(out, w[:1])
				w = w[1:]
			case w[0] == '!' && !strings.HasPrefix(w, "!="):
				out = append(out, "!")
				w = w[1:]
			default:
				i := strings.IndexAny(w, "()")
				if i < 0 {
					i = len(w)
				}
				out = append(out, w[:i])
				w = w[i:]
			}
		}
	}
	return out
}

type parser struct {
	toks []string
	i    int
}

func (p *parser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *parser) next() string {
	t := p.peek()
	if p.i < len(p.toks) {
		p.i++
	}
	return t
}

// or parses terms joined by "or"; top says whether this is the whole
// expression's top level (where state terms may appear).
func (p *parser) or(f *Filter, top bool) (*node, error) {
	a, err := p.and(f, top)
	if err != nil {
		return nil, err
	}
	for {
		switch p.peek() {
		case "or", "|", "||", ",":
			p.next()
			b, err := p.and(f, false)
			if err != nil {
				return nil, err
			}
			if a == nil || b == nil {
				return nil, fmt.Errorf("%w: state may only be joined with and, at the top level", errFilter)
			}
			a = &node{op: opOr, a: a, b: b}
		default:
			return a, nil
		}
	}
}

// and parses unary terms joined by "and" or by nothing. A state term
// returns no node (it goes to f.States).
func (p *parser) and(f *Filter, top bool) (*node, error) {
	var a *node
	terms, joined := 0, false // terms parsed; an "and" waits for its right side
	for {
		t := p.peek()
		switch t {
		case "", ")", "or", "|", "||", ",":
			if joined || (a == nil && !top) {
				return nil, fmt.Errorf("%w: a condition is missing before %q", errFilter, orEnd(t))
			}
			return a, nil
		case "and", "&", "&&":
			if terms == 0 || joined {
				return nil, fmt.Errorf("%w: a condition is missing before %q", errFilter, t)
			}
			p.next()
			joined = true
			continue
		}
		b, err := p.unary(f, top)
		if err != nil {
			return nil, err
		}
		terms, joined = terms+1, false
		switch {
		case b == nil:
		case a == nil:
			a = b
		default:
			a = &node{op: opAnd, a: a, b: b}
		}
	}
}

func orEnd(t string) string {
	if t == "" {
		return "the end"
	}
	return t
}

func (p *parser) unary(f *Filter, top bool) (*node, error) {
	switch t := p.next(); t {
	case "not", "!":
		a, err := p.unary(f, false)
		if err != nil {
			return nil, err
		}
		return &node{op: opNot, a: a}, nil
	case "(":
		a, err := p.or(f, false)
		if err != nil {
			return nil, err
		}
		if p.next() != ")" {
			return nil, fmt.Errorf("%w: missing )", errFilter)
		}
		return a, nil
	case "state", "exclude":
		if !top {
			return nil, fmt.Errorf("%w: %s may only be joined with and, at the top level (as in ss)", errFilter, t)
		}
		name := p.next()
		set, err := parseStateName(name)
		if err != nil {
			return nil, err
		}
		if t == "exclude" {
			if f.States == 0 {
				f.States = AllStates
			}
			f.States &^= set
		} else {
			f.States |= set
		}
		return nil, nil
	case "sport", "dport":
		kind := condSport
		if t == "dport" {
			kind = condDport
		}
		cmp := cmpEq
		if c, ok := parseCmp(p.peek()); ok {
			cmp = c
			p.next()
		}
		word := p.next()
		port, err := parsePortWord(word)
		if err != nil || port < 0 {
			return nil, fmt.Errorf("%w: %s %q: want a port, e.g. :8080", errFilter, t, word)
		}
		return &node{op: opCond, kind: kind, cmp: cmp, port: port}, nil
	case "src", "dst":
		kind := condSrc
		if t == "dst" {
			kind = condDst
		}
		neg := false
		if c, ok := parseCmp(p.peek()); ok {
			if c != cmpEq && c != cmpNe {
				return nil, fmt.Errorf("%w: %s compares addresses with = or != only", errFilter, t)
			}
			neg = c == cmpNe
			p.next()
		}
		word := p.next()
		n, err := parseHostCond(word)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %q: %v", errFilter, t, word, err)
		}
		n.kind = kind
		if neg {
			return &node{op: opNot, a: n}, nil
		}
		return n, nil
	case "":
		return nil, fmt.Errorf("%w: unexpected end", errFilter)
	default:
		return nil, fmt.Errorf("%w: unknown word %q (want sport, dport, src, dst, state, and, or, not, parentheses)", errFilter, t)
	}
}

func parseStateName(name string) (StateSet, error) {
	n := strings.ToLower(name)
	if set, ok := ssStates[n]; ok {
		return set, nil
	}
	st, err := ParseState(n)
	if err != nil {
		return 0, fmt.Errorf("%w: state: %v", errFilter, err)
	}
	return States(st), nil
}

func parseCmp(t string) (cmpOp, bool) {
	switch t {
	case "=", "==", "eq":
		return cmpEq, true
	case "!=", "ne", "neq":
		return cmpNe, true
	case ">=", "ge", "geq":
		return cmpGe, true
	case "<=", "le", "leq":
		return cmpLe, true
	case ">", "gt":
		return cmpGt, true
	case "<", "lt":
		return cmpLt, true
	}
	return 0, false
}

// parsePortWord parses ":8080" or "8080" (":*" and "*" are any: -1).
func parsePortWord(w string) (int, error) {
	w = strings.TrimPrefix(w, ":")
	if w == "*" {
		return -1, nil
	}
	n, err := strconv.ParseUint(w, 10, 16)
	if err != nil {
		return 0, errors.New("want a port number 0-65535")
	}
	return int(n), nil
}

// parseHostCond parses ADDR, ADDR/BITS, ADDR:PORT, [V6]:PORT, [V6/BITS]:PORT,
// *:PORT and :PORT.
func parseHostCond(w string) (*node, error) {
	n := &node{op: opCond, port: -1}
	host, port := w, ""
	switch {
	case strings.HasPrefix(w, "["):
		end := strings.Index(w, "]")
		if end < 0 {
			return nil, errors.New("missing ]")
		}
		host = w[1:end]
		rest := w[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return nil, errors.New("want [ADDR]:PORT")
			}
			port = rest[1:]
		}
	case strings.Count(w, ":") == 1:
		host, port, _ = strings.Cut(w, ":")
	}
	if port != "" {
		p, err := parsePortWord(port)
		if err != nil {
			return nil, err
		}
		n.port = p
	}
	if host == "" || host == "*" {
		if port == "" {
			return nil, errors.New("want an address or a port")
		}
		return n, nil
	}
	var err error
	if strings.Contains(host, "/") {
		n.prefix, err = netip.ParsePrefix(host)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(host)
		if err == nil {
			if a.Zone() != "" {
				// PrefixFrom would drop it, and the condition match the
				// address on every interface.
				return nil, errors.New("the filter does not match zones: give the address without one")
			}
			n.prefix = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return nil, errors.New("want a numeric address, a prefix (10.0.0.0/8) or a port (:80)")
	}
	n.prefix = n.prefix.Masked()
	return n, nil
}

// String prints the expression in the syntax ParseFilter reads.
func (f *Filter) String() string {
	var parts []string
	if f.States != 0 {
		for s := State(1); s < numStates; s++ {
			if f.States.Has(s) {
				parts = append(parts, "state "+s.String())
			}
		}
	}
	if f.expr != nil {
		parts = append(parts, f.expr.String())
	}
	return strings.Join(parts, " ")
}

func (n *node) String() string {
	switch n.op {
	case opAnd:
		return "(" + n.a.String() + " and " + n.b.String() + ")"
	case opOr:
		return "(" + n.a.String() + " or " + n.b.String() + ")"
	case opNot:
		return "not " + n.a.String()
	}
	switch n.kind {
	case condSport, condDport:
		name := "sport"
		if n.kind == condDport {
			name = "dport"
		}
		return fmt.Sprintf("%s %s :%d", name, [...]string{"", "=", "!=", ">=", "<=", ">", "<"}[n.cmp], n.port)
	}
	name := "src"
	if n.kind == condDst {
		name = "dst"
	}
	host := "*"
	if n.prefix.IsValid() {
		host = n.prefix.String()
		if n.prefix.IsSingleIP() {
			host = n.prefix.Addr().String()
		}
		if n.prefix.Addr().Is6() {
			host = "[" + host + "]"
		}
	}
	switch {
	case n.port >= 0:
		return fmt.Sprintf("%s %s:%d", name, host, n.port)
	case !n.prefix.IsValid():
		return name + " *:*" // "src :*": any address, any port
	}
	return name + " " + host
}

// Match reports whether s passes the filter, as the kernel's bytecode
// would decide (states included).
func (f *Filter) Match(s *Socket) bool {
	if f == nil {
		return true
	}
	if f.States != 0 && !f.States.Has(s.State) {
		return false
	}
	return f.expr == nil || f.expr.match(s)
}

func (n *node) match(s *Socket) bool {
	switch n.op {
	case opAnd:
		return n.a.match(s) && n.b.match(s)
	case opOr:
		return n.a.match(s) || n.b.match(s)
	case opNot:
		return !n.a.match(s)
	}
	switch n.kind {
	case condSport, condDport:
		p := int(s.Local.Port())
		if n.kind == condDport {
			p = int(s.Remote.Port())
		}
		switch n.cmp {
		case cmpEq:
			return p == n.port
		case cmpNe:
			return p != n.port
		case cmpGe:
			return p >= n.port
		case cmpLe:
			return p <= n.port
		case cmpGt:
			return p > n.port
		case cmpLt:
			return p < n.port
		}
		return false
	}
	ap := s.Local
	if n.kind == condDst {
		ap = s.Remote
	}
	if n.port >= 0 && int(ap.Port()) != n.port {
		return false
	}
	if !n.prefix.IsValid() {
		return true
	}
	a := ap.Addr()
	// inet_diag_bc_run: an IPv4 condition matches an IPv6 socket's
	// v4-mapped address; otherwise the families must be equal.
	if n.prefix.Addr().Is4() && a.Is4In6() && s.Family == inet.IPv6 {
		a = a.Unmap()
	}
	if n.prefix.Addr().Is4() != a.Is4() {
		return false
	}
	return n.prefix.Contains(a)
}
