package lab

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/lazyre"
)

// Limits that keep a hostile or mistaken file from exhausting the runner.
const (
	maxFileSize  = 1 << 20 // bytes
	maxLineLen   = 4096
	maxSteps     = 2000 // per scenario
	maxScenarios = 1000 // per file
	// MaxUIDs bounds the distinct uids of one scenario: each runs in its
	// own helper process (about 2 MB each), alive while the scenario runs.
	MaxUIDs = 16
)

// Kind is what a step does.
type Kind uint8

const (
	KindSocket  Kind = iota + 1 // SOCK socket PROTO [OPTS]
	KindServer                  // SOCK server PROTO ADDR:PORT [OPTS]
	KindBind                    // SOCK bind ADDR:PORT
	KindListen                  // SOCK listen
	KindConnect                 // SOCK connect ADDR:PORT
	KindClose                   // SOCK close
	KindPass                    // SOCK pass uid=N
	KindSysctl                  // sysctl KEY=VALUE
	KindSleep                   // sleep DURATION (an extension: lets time-based rules play out)
)

// maxSleep bounds one sleep line.
const maxSleep = 5 * time.Second

var kindNames = map[string]Kind{
	"socket": KindSocket, "server": KindServer, "bind": KindBind, "listen": KindListen,
	"connect": KindConnect, "close": KindClose, "pass": KindPass,
}

func (k Kind) String() string {
	for n, v := range kindNames {
		if v == k {
			return n
		}
	}
	switch k {
	case KindSysctl:
		return "sysctl"
	case KindSleep:
		return "sleep"
	}
	return "kind?"
}

// Proto is a socket's protocol and family as the format spells it.
type Proto string

const (
	TCP4 Proto = "tcp4"
	TCP6 Proto = "tcp6"
	UDP4 Proto = "udp4"
	UDP6 Proto = "udp6"
)

// IsTCP reports whether p is a TCP protocol.
func (p Proto) IsTCP() bool { return p == TCP4 || p == TCP6 }

// IsIPv6 reports whether p makes an AF_INET6 socket.
func (p Proto) IsIPv6() bool { return p == TCP6 || p == UDP6 }

// Options are a socket's options, applied before bind.
type Options struct {
	ReuseAddr  bool
	ReusePort  bool
	V6Only     bool
	BindNoPort bool // IP_BIND_ADDRESS_NO_PORT
	Freebind   bool
	PortRange  inet.PortRange // IP_LOCAL_PORT_RANGE when non-zero
	Dev        string         // SO_BINDTODEVICE when non-empty
	UID        uint32         // the uid that creates the socket (0: root)
	In         string         // the topology host the socket lives on ("": the scenario's own namespace)
}

// Endpoint is ADDR:PORT where the port may name another socket's local port
// (PortOf, the @OTHER form).
type Endpoint struct {
	Addr   netip.Addr
	Port   uint16
	PortOf string
}

func (e Endpoint) String() string {
	port := strconv.Itoa(int(e.Port))
	if e.PortOf != "" {
		port = "@" + e.PortOf
	}
	if e.Addr.Is6() {
		return "[" + e.Addr.String() + "]:" + port
	}
	return e.Addr.String() + ":" + port
}

// Step is one line of a scenario.
type Step struct {
	Line  int    // 1-based line number in the file
	Sock  string // the socket's name; empty for sysctl
	Kind  Kind
	Op    string // the operation as written, without the socket name and expectation
	Proto Proto  // socket, server
	Addr  Endpoint
	Opts  Options       // socket, server
	UID   uint32        // pass
	Key   string        // sysctl, e.g. net.ipv4.ip_local_port_range
	Value string        // sysctl, e.g. "40000 40000"
	Sleep time.Duration // sleep
	// Host is the topology host the line runs on: its socket's in=HOST,
	// or a sysctl's; "" for the scenario's own namespace.
	Host string
	// Expect is the asserted result: "ok" or an errno name; empty when the
	// line asserts nothing.
	Expect string
}

// Scenario is a named list of steps that runs in its own namespace.
type Scenario struct {
	File  string // file name, for messages
	Name  string
	Line  int
	Steps []Step
	// Topology is the scenario's hosts, links and NAT rules; empty when
	// everything runs in the scenario's own namespace.
	Topology Topology
}

// Addrs returns every address the scenario names that must be made local
// (added to the namespace's loopback), without duplicates, in order of
// appearance. Loopback and unspecified addresses are local already; a
// v4-mapped address stands for its IPv4 address.
func (s Scenario) Addrs() []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, st := range s.Steps {
		if st.Kind != KindBind && st.Kind != KindConnect && st.Kind != KindServer || st.Host != "" {
			continue // a host's addresses are on its links
		}
		a := st.Addr.Addr.Unmap()
		if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || !Addable(a) || seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	return out
}

// Addable reports whether a may be added to lo as a local address:
// multicast and the limited broadcast address are never an interface's own
// address, so a scenario naming them runs without adding them and the
// kernel answers for them as they are.
func Addable(a netip.Addr) bool {
	a = a.Unmap()
	return !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// UIDs returns the uids whose helpers the scenario needs, root first.
func (s Scenario) UIDs() []uint32 {
	out := []uint32{0}
	seen := map[uint32]bool{0: true}
	for _, st := range s.Steps {
		u := st.Opts.UID
		if st.Kind == KindPass {
			u = st.UID
		}
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

// ParseError is bad input, located at a line of a file.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// The parser's patterns (compiled at first use: lazyre).
var (
	sockNameRE = lazyre.New(`^[A-Za-z][A-Za-z0-9_-]{0,31}$`)
	scenarioRE = lazyre.New(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)
	errnoRE    = lazyre.New(`^E[A-Z0-9]{1,20}$`)
	sysctlRE   = lazyre.New(`^net(\.[a-z0-9_-]+){2,4}$`)
)

// sockInfo is what the parser knows about a socket while it reads a scenario.
type sockInfo struct {
	proto  Proto
	host   string // in=HOST
	line   int
	server bool
	closed bool
}

// Parse reads scenarios from data; name is used in error messages. It makes
// no system calls. Errors are *ParseError with the offending line.
func Parse(name string, data []byte) ([]Scenario, error) {
	if len(data) > maxFileSize {
		return nil, &ParseError{File: name, Msg: fmt.Sprintf("file is larger than %d bytes", maxFileSize)}
	}
	p := parser{file: name}
	// A UTF-8 byte-order mark, as some editors write, is not part of the
	// first line.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 256), maxLineLen+1)
	for sc.Scan() {
		p.line++
		if err := p.parseLine(sc.Text()); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		p.line++ // the line that did not fit
		return nil, p.errorf("line longer than %d bytes", maxLineLen)
	}
	if len(p.out) == 0 {
		return nil, &ParseError{File: name, Msg: "no scenarios (start one with [NAME])"}
	}
	for _, s := range p.out {
		if len(s.Steps) == 0 {
			return nil, &ParseError{File: name, Line: s.Line, Msg: fmt.Sprintf("scenario [%s] has no operations", s.Name)}
		}
		if err := p.checkTopology(&s); err != nil {
			return nil, err
		}
		if n := len(s.UIDs()); n > MaxUIDs {
			return nil, &ParseError{File: name, Line: s.Line, Msg: fmt.Sprintf("scenario [%s] uses %d uids; at most %d (each runs in its own helper process)", s.Name, n, MaxUIDs)}
		}
	}
	return p.out, nil
}

type parser struct {
	file  string
	line  int
	out   []Scenario
	socks map[string]*sockInfo
}

func (p *parser) errorf(format string, args ...any) error {
	return &ParseError{File: p.file, Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) parseLine(raw string) error {
	line := stripComment(raw)
	if line == "" {
		return nil
	}
	if strings.HasPrefix(line, "[") {
		return p.startScenario(line)
	}
	if len(p.out) == 0 {
		return p.errorf("operation outside a scenario (start one with [NAME])")
	}
	sc := &p.out[len(p.out)-1]
	if len(sc.Steps) >= maxSteps {
		return p.errorf("scenario [%s] has more than %d operations", sc.Name, maxSteps)
	}
	st := Step{Line: p.line}
	line, err := p.expectation(line, &st)
	if err != nil {
		return err
	}
	f := strings.Fields(line)
	switch {
	case len(f) == 0:
		return p.errorf("=> without an operation")
	case topoKeyword(f):
		return p.topology(sc, f, st.Expect != "")
	case f[0] == "sysctl":
		return p.sysctlLine(sc, st, strings.TrimSpace(strings.TrimPrefix(line, "sysctl")))
	case f[0] == "sleep":
		return p.sleep(sc, st, f)
	case len(f) < 2:
		return p.errorf("want SOCK OPERATION ..., got %q", line)
	}
	return p.operation(sc, st, f)
}

// stripComment is the line without its comment (# at the start, or after
// a space or tab) and the white space around it.
func stripComment(raw string) string {
	line := strings.TrimSpace(raw)
	if i := strings.Index(line, " #"); i >= 0 {
		line = strings.TrimSpace(line[:i])
	}
	if i := strings.Index(line, "\t#"); i >= 0 {
		line = strings.TrimSpace(line[:i])
	}
	if strings.HasPrefix(line, "#") {
		return ""
	}
	return line
}

// expectation takes the "=> RESULT" off the end of line into st.Expect and
// returns the rest.
func (p *parser) expectation(line string, st *Step) (string, error) {
	i := strings.LastIndex(line, "=>")
	if i < 0 {
		return line, nil
	}
	exp := strings.TrimSpace(line[i+2:])
	if exp != "ok" && !errnoRE().MatchString(exp) {
		return "", p.errorf("bad result %q after => (want ok or an errno name like EADDRINUSE)", exp)
	}
	if exp != "ok" && !knownErrno(exp) {
		return "", p.errorf("unknown errno name %q", exp)
	}
	st.Expect = exp
	return strings.TrimSpace(line[:i]), nil
}

// sysctlLine parses what follows "sysctl": an optional in=HOST, then
// KEY=VALUE.
func (p *parser) sysctlLine(sc *Scenario, st Step, rest string) error {
	if in, ok := strings.CutPrefix(rest, "in="); ok {
		host, after, _ := strings.Cut(in, " ")
		var err error
		if st.Host, err = p.hostOption(sc, host); err != nil {
			return err
		}
		rest = strings.TrimSpace(after)
	}
	return p.sysctl(sc, st, rest)
}

// sleep parses "sleep DURATION".
func (p *parser) sleep(sc *Scenario, st Step, f []string) error {
	d, err := time.ParseDuration(strings.Join(f[1:], ""))
	if len(f) != 2 || err != nil || d <= 0 || d > maxSleep {
		return p.errorf("sleep takes a duration up to %v, e.g. sleep 10ms", maxSleep)
	}
	st.Kind, st.Sleep, st.Op = KindSleep, d, "sleep "+f[1]
	sc.Steps = append(sc.Steps, st)
	return nil
}

// operation parses "SOCK OPERATION ARGS...": the socket must exist (or,
// for socket and server, not exist yet) and the arguments fit the
// operation.
func (p *parser) operation(sc *Scenario, st Step, f []string) error {
	if !sockNameRE().MatchString(f[0]) {
		return p.errorf("bad socket name %q (a letter, then letters, digits, - or _)", f[0])
	}
	kind, ok := kindNames[f[1]]
	switch {
	case !ok && (f[1] == "sysctl" || f[1] == "sleep"):
		return p.errorf("%s takes no socket name: it acts on the namespace (write %q without %s)", f[1], strings.Join(f[1:], " "), f[0])
	case !ok:
		return p.errorf("unknown operation %q after socket %s (want socket, server, bind, listen, connect, close or pass)", f[1], f[0])
	}
	st.Sock, st.Kind = f[0], kind
	st.Op = strings.Join(f[1:], " ")
	info := p.socks[st.Sock]
	if err := p.sockState(st.Sock, kind, info); err != nil {
		return err
	}
	if err := p.arguments(sc, &st, info, f[1], f[2:]); err != nil {
		return err
	}
	if kind == KindSocket || kind == KindServer {
		if p.socks == nil {
			p.socks = map[string]*sockInfo{}
		}
		p.socks[st.Sock] = &sockInfo{proto: st.Proto, line: p.line, server: kind == KindServer, host: st.Opts.In}
		st.Host = st.Opts.In
	} else {
		st.Host = info.host
	}
	sc.Steps = append(sc.Steps, st)
	return nil
}

// sockState checks that socket name exists and is open for the operation,
// or for socket and server that it does not exist or was closed.
func (p *parser) sockState(name string, kind Kind, info *sockInfo) error {
	if kind == KindSocket || kind == KindServer {
		if info != nil && !info.closed {
			return p.errorf("socket %s already exists (line %d); close it first or pick another name", name, info.line)
		}
		return nil
	}
	if info == nil {
		return p.errorf("socket %s is used before it is created (with %s socket or %s server)", name, name, name)
	}
	if info.closed {
		return p.errorf("socket %s is used after its close", name)
	}
	return nil
}

// arguments parses the operation op's arguments into st.
func (p *parser) arguments(sc *Scenario, st *Step, info *sockInfo, op string, args []string) error {
	var err error
	switch st.Kind {
	case KindSocket:
		err = p.socket(sc, st, args, false)
	case KindServer:
		err = p.socket(sc, st, args, true)
	case KindBind, KindConnect:
		if len(args) != 1 {
			return p.errorf("%s takes one ADDR:PORT", op)
		}
		st.Addr, err = p.endpoint(args[0], info.proto)
	case KindListen, KindClose:
		if len(args) != 0 {
			return p.errorf("%s takes no arguments", op)
		}
		if st.Kind == KindListen && !info.proto.IsTCP() {
			return p.errorf("listen needs a TCP socket; %s is %s", st.Sock, info.proto)
		}
		if st.Kind == KindClose {
			info.closed = true
		}
	case KindPass:
		if info.server {
			return p.errorf("pass hands over sockets made with socket, not servers")
		}
		if len(args) != 1 || !strings.HasPrefix(args[0], "uid=") {
			return p.errorf("pass takes uid=N")
		}
		st.UID, err = p.uid(strings.TrimPrefix(args[0], "uid="))
	}
	return err
}

func (p *parser) startScenario(line string) error {
	if !strings.HasSuffix(line, "]") {
		return p.errorf("scenario header %q: want [NAME]", line)
	}
	name := strings.TrimSpace(line[1 : len(line)-1])
	if !scenarioRE().MatchString(name) {
		return p.errorf("bad scenario name %q (a letter, then up to 63 letters, digits, ., - or _)", name)
	}
	for _, s := range p.out {
		if s.Name == name {
			return p.errorf("scenario [%s] already defined at line %d", name, s.Line)
		}
	}
	if len(p.out) >= maxScenarios {
		return p.errorf("more than %d scenarios", maxScenarios)
	}
	p.out = append(p.out, Scenario{File: p.file, Name: name, Line: p.line})
	p.socks = nil
	return nil
}

func (p *parser) sysctl(sc *Scenario, st Step, rest string) error {
	key, value, ok := strings.Cut(rest, "=")
	key, value = strings.TrimSpace(key), strings.TrimSpace(value)
	if !ok || key == "" || value == "" {
		return p.errorf("sysctl takes KEY=VALUE, e.g. net.ipv4.ip_local_port_range=40000 40001")
	}
	if !sysctlRE().MatchString(key) {
		return p.errorf("sysctl %q: only net.* keys (they belong to the namespace)", key)
	}
	if len(value) > 256 || strings.ContainsAny(value, "\x00\n") {
		return p.errorf("sysctl %s: bad value", key)
	}
	st.Kind, st.Key, st.Value = KindSysctl, key, value
	st.Op = "sysctl " + key + "=" + value
	if st.Host != "" {
		st.Op = "sysctl in=" + st.Host + " " + key + "=" + value
	}
	sc.Steps = append(sc.Steps, st)
	return nil
}

func (p *parser) socket(sc *Scenario, st *Step, args []string, server bool) error {
	verb := "socket"
	if server {
		verb = "server"
	}
	if len(args) == 0 {
		return p.errorf("%s needs a protocol: tcp4, tcp6, udp4 or udp6", verb)
	}
	switch Proto(args[0]) {
	case TCP4, TCP6, UDP4, UDP6:
		st.Proto = Proto(args[0])
	default:
		return p.errorf("unknown protocol %q (want tcp4, tcp6, udp4 or udp6)", args[0])
	}
	args = args[1:]
	if server {
		if len(args) == 0 {
			return p.errorf("server needs ADDR:PORT after the protocol")
		}
		var err error
		if st.Addr, err = p.endpoint(args[0], st.Proto); err != nil {
			return err
		}
		args = args[1:]
	}
	seen := map[string]bool{}
	for _, a := range args {
		key, val, hasVal := strings.Cut(a, "=")
		if seen[key] {
			return p.errorf("option %q given twice", key)
		}
		seen[key] = true
		if err := p.socketOption(sc, st, key, val, hasVal); err != nil {
			return err
		}
	}
	return nil
}

// socketOption parses one option of a socket or server line, KEY or
// KEY=VAL, into st.Opts.
func (p *parser) socketOption(sc *Scenario, st *Step, key, val string, hasVal bool) error {
	flag := func(b *bool) error {
		if hasVal {
			return p.errorf("option %q takes no value", key)
		}
		*b = true
		return nil
	}
	var err error
	switch key {
	case "reuseaddr":
		err = flag(&st.Opts.ReuseAddr)
	case "reuseport":
		err = flag(&st.Opts.ReusePort)
	case "bind-no-port":
		err = flag(&st.Opts.BindNoPort)
	case "freebind":
		err = flag(&st.Opts.Freebind)
	case "v6only":
		if err = flag(&st.Opts.V6Only); err == nil && !st.Proto.IsIPv6() {
			err = p.errorf("option v6only needs tcp6 or udp6, not %s", st.Proto)
		}
	case "port-range":
		var ok bool
		if st.Opts.PortRange, ok = parseRange(val); !ok || !hasVal {
			err = p.errorf("option port-range: want port-range=LO-HI, each 0-65535 (0: that end open)")
		}
	case "dev":
		if !hasVal || val == "" || len(val) > 15 || strings.ContainsAny(val, "/ \x00") {
			err = p.errorf("option dev: want dev=IFNAME")
		}
		st.Opts.Dev = val
	case "uid":
		if !hasVal {
			return p.errorf("option uid: want uid=N")
		}
		st.Opts.UID, err = p.uid(val)
	case "in":
		if st.Proto.IsIPv6() {
			return p.errorf("option in: hosts are IPv4; use tcp4 or udp4")
		}
		st.Opts.In, err = p.hostOption(sc, val)
	default:
		err = p.errorf("unknown option %q (want reuseaddr, reuseport, v6only, bind-no-port, freebind, port-range=LO-HI, dev=IF, uid=N or in=HOST)", key)
	}
	return err
}

func (p *parser) uid(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n >= 1<<31 {
		return 0, p.errorf("bad uid %q (want a number below 2147483648)", s)
	}
	return uint32(n), nil
}

// endpoint parses ADDR:PORT for a socket of proto: IPv6 addresses are
// bracketed, PORT is a number or @OTHER.
func (p *parser) endpoint(s string, proto Proto) (Endpoint, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return Endpoint{}, p.errorf("address %q: want ADDR:PORT (IPv6 in brackets: [::1]:80)", s)
	}
	host, port := s[:i], s[i+1:]
	var e Endpoint
	bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")
	if bracketed {
		host = host[1 : len(host)-1]
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" || a.Is4() == bracketed {
		return Endpoint{}, p.errorf("address %q: want an IPv4 address or a bracketed IPv6 address", s)
	}
	e.Addr = a
	if proto.IsIPv6() != a.Is6() {
		return Endpoint{}, p.errorf("address %q does not fit a %s socket (v4 in v6: [::ffff:127.0.0.1])", s, proto)
	}
	if strings.HasPrefix(port, "@") {
		other := port[1:]
		info := p.socks[other]
		if info == nil {
			return Endpoint{}, p.errorf("port @%s: no socket %s before this line", other, other)
		}
		e.PortOf = other
		return e, nil
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return Endpoint{}, p.errorf("port %q: want 0-65535 or @SOCKET", port)
	}
	e.Port = uint16(n)
	return e, nil
}

// parseRange reads IP_LOCAL_PORT_RANGE's value as LO-HI. Every pair of
// 16-bit ports is taken, as the option takes them: 0 leaves that end open
// (0-40000, 49999-0), 0-0 clears the option, and the kernel itself answers
// a pair it refuses (EINVAL for LO above HI when both are set).
func parseRange(s string) (inet.PortRange, bool) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return inet.PortRange{}, false
	}
	l, err1 := strconv.ParseUint(lo, 10, 16)
	h, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil {
		return inet.PortRange{}, false
	}
	return inet.PortRange{Lo: uint16(l), Hi: uint16(h)}, true
}
