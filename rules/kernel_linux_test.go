//go:build linux

package rules

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/localroute"
	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/internal/sockaddr"
)

var (
	seedFlag  = flag.Uint64("rules.seed", 0, "seed of TestKernelDifferential (0: from the clock; env TUPLE_RULES_SEED works too)")
	casesFlag = flag.Int("rules.cases", 2500, "situations TestKernelDifferential generates")
)

// The namespace of a batch: loopback plus the addresses below on lo.
var nsAddrs = []string{"10.9.0.1/32", "fd00::1/128", "fd00::2/128", "fe80::1/128"}

const (
	srvPort    = 7    // the dual-stack peer every TCP client connects to
	firstBlock = 2000 // ports of case blocks start here
	blockSize  = 10   // per case: ports B..B+3 contended, B+5..B+8 helper clients (at most 4)
	perBatch   = 500  // cases per fresh namespace
)

// TestKernelDifferential builds many random situations for real in network
// namespaces, records the kernel's errno for each bind/listen/connect, and
// requires Predict to agree on every one.
func TestKernelDifferential(t *testing.T) {
	netnstest.RequireRoot(t)
	seed := *seedFlag
	if env := os.Getenv("TUPLE_RULES_SEED"); seed == 0 && env != "" {
		v, err := strconv.ParseUint(env, 10, 64)
		if err != nil {
			t.Fatalf("TUPLE_RULES_SEED=%q: %v", env, err)
		}
		seed = v
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	n := *casesFlag
	if testing.Short() {
		n = min(n, 300)
	}
	t.Logf("seed %d (reproduce with -rules.seed=%d or TUPLE_RULES_SEED=%d), %d cases", seed, seed, seed, n)
	rng := rand.New(rand.NewPCG(seed, 0x7475706c65))
	var total stats
	start := time.Now()
	for done := 0; done < n; done += perBatch {
		ns := netnstest.New(t, nsAddrs...)
		b := &batch{t: t, rng: rng, ns: ns, sysctl: map[string]string{}}
		err := ns.Do(func() error { return b.run(min(perBatch, n-done), done) })
		if err != nil {
			t.Fatalf("batch at case %d: %v", done, err)
		}
		total.add(b.stats)
	}
	// The no-IPv6-source class needs IPv6 off on lo: a namespace of its own.
	{
		ns := netnstest.New(t, "10.9.0.1/32")
		b := &batch{t: t, rng: rng, ns: ns, sysctl: map[string]string{}}
		var st classStats
		err := ns.Do(func() error {
			var err error
			st, err = b.noSourceCases(max(n/25, 20))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if b.stats.classes == nil {
			b.stats.classes = map[string]classStats{}
		}
		b.stats.classes["no-ipv6-source"] = st
		total.add(b.stats)
	}
	t.Logf("rule classes: %s", classSummary(total.classes))
	if n >= 500 {
		for _, c := range append(append([]string(nil), classNames...), "no-ipv6-source") {
			if total.classes[c].checks == 0 {
				t.Errorf("class %s: no case checked against the kernel", c)
			}
		}
	}
	res := 0
	for _, v := range total.residual {
		res += v
	}
	agree := total.checks - total.bad - res
	t.Logf("%d cases, %d kernel checks in %v: %d agree, %d disagree, %d residual (%.3f%% agreement)",
		total.cases, total.checks, time.Since(start).Round(time.Millisecond), agree, total.bad, res,
		100*float64(agree)/float64(max(total.checks, 1)))
	t.Logf("kernel verdicts seen: %s", total.verdicts())
	if len(total.ticks) > 0 {
		t.Logf("agreed once a whole second that may have ticked unseen was allowed for: %s", sortedCounts(total.ticks))
	}
	if len(total.residual) > 0 {
		t.Logf("residual (documented, not counted as agreement): %s", sortedCounts(total.residual))
	}
	if limit := residualCap(total.cases); res > limit {
		t.Errorf("%d disagreements excused as residual history in %d cases, more than the %d a run may excuse: the model, not the ports' history, is wrong", res, total.cases, limit)
	}
	t.Logf("model rules seen: %s", total.ruleList())
	for i, d := range total.disagreements {
		if i == 25 {
			t.Errorf("... and %d more disagreements", len(total.disagreements)-25)
			break
		}
		t.Errorf("%s", d)
	}
}

type stats struct {
	cases, checks, bad int
	residual           map[string]int // disagreements of a documented residual class
	ticks              map[string]int // agreements found by agreesAcrossTick, by reason
	errs               map[string]int
	rules              map[string]int
	disagreements      []string
	classes            map[string]classStats // the late-learnt rule classes (classCase)
}

func (s *stats) add(o stats) {
	s.cases += o.cases
	s.checks += o.checks
	s.bad += o.bad
	s.disagreements = append(s.disagreements, o.disagreements...)
	for k, v := range o.residual {
		if s.residual == nil {
			s.residual = map[string]int{}
		}
		s.residual[k] += v
	}
	for k, v := range o.ticks {
		if s.ticks == nil {
			s.ticks = map[string]int{}
		}
		s.ticks[k] += v
	}
	for k, v := range o.errs {
		if s.errs == nil {
			s.errs = map[string]int{}
		}
		s.errs[k] += v
	}
	for k, v := range o.rules {
		if s.rules == nil {
			s.rules = map[string]int{}
		}
		s.rules[k] += v
	}
	for k, v := range o.classes {
		if s.classes == nil {
			s.classes = map[string]classStats{}
		}
		c := s.classes[k]
		c.cases, c.checks, c.bad = c.cases+v.cases, c.checks+v.checks, c.bad+v.bad
		s.classes[k] = c
	}
}

func sortedCounts(m map[string]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	slicesSort(parts)
	return strings.Join(parts, " ")
}

func (s *stats) verdicts() string { return sortedCounts(s.errs) }
func (s *stats) ruleList() string { return sortedCounts(s.rules) }

// kSock is a socket of the current case: its descriptor (-1 once closed,
// e.g. a TIME_WAIT entry) and how the model sees it.
type kSock struct {
	fd   int
	sock Socket
}

type batch struct {
	t      *testing.T
	rng    *rand.Rand
	ns     *netnstest.NS
	sysctl map[string]string
	host   Host
	srv    kSock
	world  []kSock
	log    []string // what the current case did, for a disagreement report
	caseNo int
	// bucketHistory marks ports where a socket bound to a wildcard address
	// connect()ed from a source address whose bind2 bucket held only
	// connect()-bound sockets: the kernel moves it into that bucket, whose
	// "connect-only" state (fastreuse -1) then survives the bind()-origin
	// socket and can reset the whole port to connect-shareable on the next
	// departure (inet_bhash2_update_saddr, inet_bind2_bucket_destroy,
	// inet_bind_bucket_destroy). A socket table cannot show that history.
	bucketHistory map[uint16]bool
	// cacheHistory marks ports where a socket that bound the port through
	// bind() has left while the port stayed in use: its effect on the
	// kernel's per-port reuse cache (fastreuseport uid and address) stays,
	// so a later reuseport bind can skip the conflict scan
	// (inet_csk_update_fastreuse, sk_reuseport_match). A socket table
	// shows no departed sockets.
	cacheHistory map[uint16]bool
	// bindMarked marks ports a socket that bound them through bind() left
	// while other owners stayed: kernels before 6.18 keep the bucket's
	// "taken through bind()" mark until it empties, so connect() still
	// skips the port (World.BindMarked). worldNow drops a port no socket
	// owns any more: its bucket went with the last owner.
	bindMarked map[uint16]bool
	// opStarted is the coarse clock just before the last kernel operation
	// (startOp), in nanoseconds.
	opStarted int64
	stats
}

// sockOpts are the options a generated socket gets.
type sockOpts struct {
	reuseAddr, reusePort bool
	v6only               int // 0 default, 1 on, 2 off
	uid                  uint32
	portRange            inet.PortRange
	bindNoPort           bool
	freebind             bool
	dev                  bool // SO_BINDTODEVICE lo
}

func (b *batch) pick(n int) int        { return b.rng.IntN(n) }
func (b *batch) chance(p float64) bool { return b.rng.Float64() < p }

func (b *batch) setSysctl(path, v string) error {
	if b.sysctl[path] == v {
		return nil
	}
	if err := os.WriteFile("/proc/sys/"+path, []byte(v), 0); err != nil {
		if errors.Is(err, os.ErrNotExist) && path == "net/ipv4/tcp_tw_reuse_delay" {
			return nil // before 6.13: reuse waits for the clock's second instead
		}
		return fmt.Errorf("write %s=%q: %w", path, v, err)
	}
	b.sysctl[path] = v
	return nil
}

// waitAddrs waits until the kernel routes each of the namespace's added
// addresses as local: right after `ip addr add` an IPv6 address gets its
// local route from a work queue, and until then connect() to it fails
// with ENETUNREACH.
func waitAddrs(cidrs []string) error {
	var addrs []netip.Addr
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return err
		}
		addrs = append(addrs, p.Addr())
	}
	w, err := localroute.Watch()
	if err != nil {
		return err
	}
	defer w.Close()
	return w.Wait(addrs, 3*time.Second)
}

func (b *batch) run(n, first int) error {
	if err := waitAddrs(nsAddrs); err != nil {
		return err
	}
	b.host = testHost()
	b.host.Kernel = runningKernel
	b.host.Local = append(b.host.Local, netip.MustParsePrefix("fe80::1/128"))
	fd, err := b.newSocket(inet.TCP, inet.IPv6, sockOpts{reuseAddr: true, v6only: 2})
	if err != nil {
		return err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet6{Port: srvPort}); err != nil {
		return fmt.Errorf("bind server: %w", err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		return fmt.Errorf("listen server: %w", err)
	}
	b.srv = kSock{fd: fd, sock: Socket{ID: "server", Proto: inet.TCP, Family: inet.IPv6, Local: netip.AddrPortFrom(netip.IPv6Unspecified(), srvPort), State: Listen, ReuseAddr: true}}
	defer unix.Close(fd)
	for i := 0; i < n; i++ {
		b.caseNo = first + i
		base := firstBlock + i*blockSize
		if err := b.runCase(uint16(base)); err != nil {
			return fmt.Errorf("case %d: %w", b.caseNo, err)
		}
	}
	return nil
}

// worldNow is the model's view of the namespace for the current case.
func (b *batch) worldNow() World { return b.worldAt(time.Now(), monoSec(), false) }

// worldAt is worldNow with the clock read as now and, in whole monotonic
// seconds, sec. With early, a TIME_WAIT entry whose creation straddled a
// whole second is dated in the first of the two.
func (b *batch) worldAt(now time.Time, sec int64, early bool) World {
	w := World{Host: b.host, Sockets: []Socket{b.srv.sock}}
	for _, k := range b.world {
		w.Sockets = append(w.Sockets, k.sock)
	}
	owned := map[uint16]bool{}
	for i := range w.Sockets {
		s := &w.Sockets[i]
		if s.State == TimeWait {
			s.TWAge = now.Sub(twBorn[s.ID])
			born := twBornSec[s.ID]
			if early {
				born = min(born, twBornFirstSec[s.ID])
			}
			s.TWSecondTicked = sec > born
		}
		if s.Proto == inet.TCP && ownsPort(*s) {
			owned[s.Local.Port()] = true
		}
	}
	for p := range b.bindMarked {
		if !owned[p] {
			delete(b.bindMarked, p)
			continue
		}
		w.BindMarked = append(w.BindMarked, p)
	}
	slices.Sort(w.BindMarked)
	return w
}

// twBorn records when each TIME_WAIT entry appeared (by socket ID), and
// twBornSec the monotonic clock's whole second then (what kernels before
// 6.13 compare, rules.Socket.TWSecondTicked), read once the entry was
// seen. twBornFirstSec is the second read before the close that made it:
// the kernel stamped the entry in between, so where the two differ the
// entry's second is one of [twBornFirstSec, twBornSec].
var (
	twBorn         = map[string]time.Time{}
	twBornSec      = map[string]int64{}
	twBornFirstSec = map[string]int64{}
)

// monoSec is the kernel's ktime_get_seconds(): the whole seconds of
// CLOCK_MONOTONIC_COARSE.
func monoSec() int64 { return monoNanos() / int64(time.Second) }

// monoNanos is CLOCK_MONOTONIC_COARSE in nanoseconds, 0 when unreadable.
// ktime_get_seconds(), which stamps TIME_WAIT entries before 6.13 and
// reads the clock they are compared with, is the second of the last
// timekeeping update, as the coarse clock is: CLOCK_MONOTONIC's second can
// begin a tick or more before it (in a TCG guest a 6.12 kernel reused an
// entry 8 ms old that CLOCK_MONOTONIC placed in the connect's own second).
func monoNanos() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// startOp notes the coarse clock just before a kernel operation, so a
// check can tell whether the kernel may have read the second before the
// one the check sees (tickWorlds).
func (b *batch) startOp() { b.opStarted = monoNanos() }

// twCreated records a new TIME_WAIT entry, whose close began at the
// monotonic clock's reading before (nanoseconds). With tcp_tw_reuse_delay
// at 1 ms it then waits 3 ms: the kernel compares millisecond stamps taken
// at its last packet, so ages near the delay are a coin toss.
func (b *batch) twCreated(id string, before int64) {
	twBorn[id], twBornSec[id] = time.Now(), monoSec()
	twBornFirstSec[id] = twBornSec[id]
	if before > 0 {
		twBornFirstSec[id] = before / int64(time.Second)
	}
	if b.host.TWReuseDelay == time.Millisecond {
		time.Sleep(3 * time.Millisecond)
	}
}

func (b *batch) logf(format string, args ...any) {
	b.log = append(b.log, fmt.Sprintf(format, args...))
}

// check compares the model's prediction for op by s with the kernel's
// errno for the same operation and returns the prediction.
func (b *batch) check(s Socket, op Op, kerr error) Outcome { return b.checkPort(s, op, kerr, 0) }

// checkPort is check for an operation after which the kernel's socket has
// local port kport (0: none, or not read): a disagreement is excused as
// residual only when the port involved carries the history it stands for.
func (b *batch) checkPort(s Socket, op Op, kerr error, kport uint16) Outcome {
	w := b.worldNow()
	out := Predict(w, s, op)
	got := errnoOf(kerr)
	b.checks++
	if b.errs == nil {
		b.errs, b.rules = map[string]int{}, map[string]int{}
	}
	b.errs[op.Kind.String()+":"+ErrnoName(got)]++
	b.rules[out.Rule]++
	if strings.Contains(out.Why, "udp_lib_lport_inuse2") {
		b.rules["udp-secondary-chains"]++ // a crowded slot decided (crowdPort)
	}
	b.logf("%s %s by %s -> kernel %s, model %s (%s)", op.Kind, op.Addr, describeNew(s), ErrnoName(got), out.ErrName(), out.Rule)
	if got != out.Err {
		if again, ok := b.agreesAcrossTick(s, op, got); ok {
			return again
		}
		if cls, port := b.residualClass(s, op, out, got, kport); cls != "" {
			b.excuse(cls, port)
			return out
		}
		b.disagree(w, s, op, out, fmt.Sprintf("kernel %s, model %s", ErrnoName(got), out.ErrName()))
	}
	return out
}

// agreesAcrossTick asks the model again where a whole second may have
// ticked at a moment the test cannot see (tickWorlds) and returns the first
// answer that agrees with the kernel's errno got.
func (b *batch) agreesAcrossTick(s Socket, op Op, got syscall.Errno) (Outcome, bool) {
	var again Outcome
	if !b.acrossTick(func(w World) bool {
		again = Predict(w, s, op)
		return again.Err == got
	}) {
		return Outcome{}, false
	}
	return again, true
}

// acrossTick reports whether holds is true of one of the tickWorlds, and
// counts the first it is true of.
func (b *batch) acrossTick(holds func(World) bool) bool {
	for _, tw := range b.tickWorlds() {
		if holds(tw.World) {
			b.tickAgreed(tw.why)
			return true
		}
	}
	return false
}

// tickWorld is the model's view of the namespace with a whole second
// placed differently, and why that placement is possible.
type tickWorld struct {
	World
	why string
}

// tickWorlds are the other views of the namespace a kernel that compares
// whole seconds (TIME_WAIT reuse before 6.13) may have had, none on later
// kernels:
//   - the kernel read the clock during the operation, before this check:
//     when the operation began in the second before the check's, it may
//     have read that one;
//   - a TIME_WAIT entry whose close straddled a second was stamped in any
//     second of it (the first here, the last in worldNow);
//   - both.
func (b *batch) tickWorlds() []tickWorld {
	if b.host.Kernel.AtLeast(6, 13, 0) {
		return nil // millisecond stamps: no whole second compared
	}
	if b.opStarted == 0 {
		// A check of an operation no startOp stamped: an allowance
		// for it would be a guess.
		b.t.Errorf("case %d: a check with no operation stamped (startOp); log:\n%s", b.caseNo, strings.Join(b.log, "\n"))
		return nil
	}
	ns := monoNanos()
	sec := ns / int64(time.Second)
	since := time.Duration(ns % int64(time.Second))
	opInPrevSecond := b.opStarted/int64(time.Second) < sec
	straddled := false
	for _, k := range b.world {
		if k.sock.State == TimeWait && twBornFirstSec[k.sock.ID] < twBornSec[k.sock.ID] {
			straddled = true
		}
	}
	var out []tickWorld
	for _, r := range []struct {
		prev, early bool
		why         string
	}{
		{true, false, "previous second at the check"},
		{false, true, "entry dated in its close's first second"},
		{true, true, "both"},
	} {
		if (r.prev && !opInPrevSecond) || (r.early && !straddled) {
			continue
		}
		at := sec
		if r.prev {
			at--
		}
		out = append(out, tickWorld{b.worldAt(time.Now(), at, r.early), fmt.Sprintf("%s (the second began %v before the check)", r.why, since)})
	}
	return out
}

// tickAgreed counts a check that agreed in a tickWorld.
func (b *batch) tickAgreed(why string) {
	b.logf("  agrees with the %s", why)
	reason, _, _ := strings.Cut(why, " (")
	if b.ticks == nil {
		b.ticks = map[string]int{}
	}
	b.ticks[reason]++
}

// excuse counts a disagreement of a documented residual class on port.
func (b *batch) excuse(cls string, port uint16) {
	if b.residual == nil {
		b.residual = map[string]int{}
	}
	b.residual[cls]++
	b.logf("residual: %s on port %d", cls, port)
}

// residualCap bounds the disagreements a run may excuse as residual
// history: they are rare (a port's bucket or reuse cache shaped by sockets
// that left), and more than this means the model is wrong, not the world.
func residualCap(cases int) int { return max(3, cases/500) }

// residualClass names the documented class a disagreement belongs to and
// the port whose history explains it, or "" when none does. The model said
// out, the kernel got (with local port kport, 0 when unknown).
//   - reuse-cache-history: a TCP bind()/listen() on port P the model
//     refuses and the kernel allows, where a socket that bound P through
//     bind() has left (batch.cacheHistory[P]).
//   - bind-bucket-history: a TCP connect() that took port P where the model
//     finds none usable, P having bucket history (batch.bucketHistory[P]);
//     or one the kernel refuses where every port the model counts usable
//     has that history.
func (b *batch) residualClass(s Socket, op Op, out Outcome, got syscall.Errno, kport uint16) (string, uint16) {
	if s.Proto != inet.TCP {
		return "", 0
	}
	switch op.Kind {
	case OpBind, OpListen:
		port := op.Addr.Port()
		if op.Kind == OpListen {
			port = s.Local.Port()
		}
		if out.Err == syscall.EADDRINUSE && got == 0 && b.cacheHistory[port] {
			return "reuse-cache-history", port
		}
	case OpConnect:
		switch {
		case out.Rule == "connect-exhausted" && got == 0 && b.bucketHistory[kport]:
			return "bind-bucket-history", kport
		case out.Rule == "connect-search" && got == syscall.EADDRNOTAVAIL:
			if p, ok := b.onlyHistoryCandidates(s, op, out); ok {
				return "bind-bucket-history", p
			}
		}
	}
	return "", 0
}

// onlyHistoryCandidates reports whether every port the model counts usable
// for the connect() op of s has bucket history, and names one.
func (b *batch) onlyHistoryCandidates(s Socket, op Op, out Outcome) (uint16, bool) {
	n, first := 0, uint16(0)
	for p := range b.bucketHistory {
		if b.modelCounts(s, op, p) {
			n++
			first = p
		}
	}
	return first, n > 0 && n == out.Candidates
}

// modelCounts reports whether the model counts port p usable for the
// autobinding op of s: the question asked with the range p-p.
func (b *batch) modelCounts(s Socket, op Op, p uint16) bool {
	return b.countsIn(b.worldNow(), s, op, p)
}

// countsIn is modelCounts in the view w of the namespace.
func (b *batch) countsIn(w World, s Socket, op Op, p uint16) bool {
	h := b.host
	h.EphemeralRange = inet.PortRange{Lo: p, Hi: p}
	s.PortRange = inet.PortRange{}
	return Predict(World{Host: h, Sockets: w.Sockets}, s, op).Candidates == 1
}

// countsAcrossTick is modelCounts where a whole second may have ticked
// unseen (tickWorlds): a TIME_WAIT entry on p may then have been reusable.
func (b *batch) countsAcrossTick(s Socket, op Op, p uint16) bool {
	return b.modelCounts(s, op, p) || b.acrossTick(func(w World) bool { return b.countsIn(w, s, op, p) })
}

// choosesAcrossTick reports whether the model, in a view where a whole
// second may have ticked unseen (tickWorlds), names port p for op, or names
// none and counts p: a TIME_WAIT entry that became reusable there may move
// the port a search takes first. The view the check saw is not asked: there
// the model named another port.
func (b *batch) choosesAcrossTick(s Socket, op Op, p uint16) bool {
	return b.acrossTick(func(w World) bool {
		named := Predict(w, s, op).After.Local.Port()
		return named == p || (named == 0 && b.countsIn(w, s, op, p))
	})
}

func (b *batch) disagree(w World, s Socket, op Op, out Outcome, what string) {
	b.bad++
	var sb strings.Builder
	fmt.Fprintf(&sb, "case %d: %s %s: %s\n  model: rule %s: %s\n  host: range %v reserved %v autobind_reuse %v tw_reuse %d delay %v bindv6only %v\n  world:\n",
		b.caseNo, op.Kind, op.Addr, what, out.Rule, out.Why, w.Host.EphemeralRange, w.Host.ReservedPorts, w.Host.AutobindReuse, w.Host.TCPTWReuse, w.Host.TWReuseDelay, w.Host.BindV6Only)
	for i, o := range w.Sockets {
		fmt.Fprintf(&sb, "    [%d] %s\n", i, describeFull(o))
	}
	fmt.Fprintf(&sb, "  new: %s\n  steps:\n", describeFull(s))
	for _, l := range b.log {
		fmt.Fprintf(&sb, "    %s\n", l)
	}
	b.disagreements = append(b.disagreements, sb.String())
}

func describeNew(s Socket) string {
	return fmt.Sprintf("%s/%d %s ra=%v rp=%v v6only=%v(default %v) uid=%d range=%v nport=%v", s.Proto, s.Family, s.State, s.ReuseAddr, s.ReusePort, s.V6Only, s.V6OnlyDefault, s.UID, s.PortRange, s.BindNoPort)
}

func describeFull(s Socket) string {
	return fmt.Sprintf("%s %s/%d %s ra=%v rp=%v v6only=%v uid=%d fromConnect=%v ts=%v age=%v",
		s.ID, describe(s), s.Family, s.Local, s.ReuseAddr, s.ReusePort, s.V6Only, s.UID, s.PortFromConnect, s.TWTimestamps, s.TWAge.Round(time.Millisecond))
}

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}

// newSocket creates a socket with the options, as uid (the fsuid at
// socket() time becomes sk_uid; setfsuid is per thread, and this runs on
// the namespace's locked thread).
func (b *batch) newSocket(p inet.Proto, fam inet.Family, o sockOpts) (int, error) {
	if o.uid != 0 {
		if err := unix.Setfsuid(int(o.uid)); err != nil {
			return -1, err
		}
		defer unix.Setfsuid(0)
	}
	domain, typ := unix.AF_INET, unix.SOCK_STREAM
	if fam == inet.IPv6 {
		domain = unix.AF_INET6
	}
	if p == inet.UDP {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	set := func(level, opt, v int) {
		if err == nil {
			err = unix.SetsockoptInt(fd, level, opt, v)
		}
	}
	if o.reuseAddr {
		set(unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if o.reusePort {
		set(unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}
	if fam == inet.IPv6 && o.v6only != 0 {
		set(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, boolInt(o.v6only == 1))
	}
	if !o.portRange.IsZero() && runningKernel.HasPortRangeOpt() {
		set(unix.IPPROTO_IP, unix.IP_LOCAL_PORT_RANGE, int(o.portRange.Lo)|int(o.portRange.Hi)<<16)
	}
	if o.bindNoPort {
		set(unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}
	if o.freebind {
		set(unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
	}
	if o.dev && err == nil {
		err = unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, "lo")
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// runningKernel is the kernel the test runs on (a guest's under
// TestKernelDifferentialInGuests): the model follows its rules. A kernel
// without IP_LOCAL_PORT_RANGE (before 6.3) gets no per-socket range, in
// the kernel and in the model alike.
var runningKernel = func() Kernel {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return Kernel{}
	}
	k, err := KernelFromUname(unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:]))
	if err != nil {
		return Kernel{}
	}
	return k
}()

// modelSocket is the new socket as the model sees it before any operation.
func modelSocket(p inet.Proto, fam inet.Family, o sockOpts) Socket {
	if !runningKernel.HasPortRangeOpt() {
		o.portRange = inet.PortRange{}
	}
	return Socket{Proto: p, Family: fam, ReuseAddr: o.reuseAddr, ReusePort: o.reusePort,
		V6Only: o.v6only == 1, V6OnlyDefault: fam == inet.IPv6 && o.v6only == 0, UID: o.uid,
		PortRange: o.portRange, BindNoPort: o.bindNoPort, Freebind: o.freebind, CanBindPrivileged: true,
		Dev: LoopbackIndex * boolInt(o.dev)}
}

// observe fills s's addresses and IPV6_V6ONLY from the kernel, as a socket
// table would show them.
// localPort is the local port the kernel gave fd, 0 when it has none.
func localPort(fd int) uint16 {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0
	}
	return sockaddr.AddrPort(sa).Port()
}

func observe(fd int, s *Socket) {
	if sa, err := unix.Getsockname(fd); err == nil {
		s.Local = sockaddr.AddrPort(sa)
	}
	if sa, err := unix.Getpeername(fd); err == nil {
		s.Remote = sockaddr.AddrPort(sa)
	}
	if s.Family == inet.IPv6 {
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		s.V6Only = err == nil && v == 1
	}
	s.V6OnlyDefault = false
}

var (
	v4Addrs = []string{"127.0.0.1", "127.0.0.2", "10.9.0.1", "0.0.0.0", "127.0.0.1", "0.0.0.0"}
	v6Addrs = []string{"::", "::", "::ffff:127.0.0.1", "::ffff:0.0.0.0", "fd00::1", "fd00::2", "::1", "::ffff:10.9.0.1", "::ffff:127.0.0.2"}
)

func (b *batch) randAddr(fam inet.Family) netip.Addr {
	if fam == inet.IPv4 {
		if b.chance(0.03) {
			return netip.MustParseAddr("::ffff:127.0.0.1") // family mismatch
		}
		if b.chance(0.03) {
			return netip.MustParseAddr("192.0.2.1") // not local
		}
		return netip.MustParseAddr(v4Addrs[b.pick(len(v4Addrs))])
	}
	if b.chance(0.03) {
		return netip.MustParseAddr("127.0.0.1") // sockaddr_in on AF_INET6
	}
	if b.chance(0.02) {
		return netip.MustParseAddr("::ffff:192.0.2.1") // not local
	}
	if b.chance(0.02) {
		return netip.MustParseAddr("fd00::9") // not local
	}
	return netip.MustParseAddr(v6Addrs[b.pick(len(v6Addrs))])
}

func (b *batch) randOpts(fam inet.Family) sockOpts {
	o := sockOpts{reuseAddr: b.chance(0.5), reusePort: b.chance(0.4), dev: b.chance(0.12)}
	if fam == inet.IPv6 {
		o.v6only = b.pick(3)
	}
	if b.chance(0.3) {
		o.uid = 65534
	}
	return o
}

// peerFor picks a peer the socket at local can reach (mostly) in the
// socket's family: the server for TCP.
func (b *batch) peerFor(fam inet.Family, local netip.Addr, v6only bool) netip.AddrPort {
	var choices []string
	switch {
	case fam == inet.IPv4:
		choices = []string{"127.0.0.1", "10.9.0.1", "127.0.0.2"}
	case local.Is4In6() && !local.Unmap().IsUnspecified():
		choices = []string{"::ffff:127.0.0.1", "::ffff:10.9.0.1"}
	case local.IsValid() && !local.IsUnspecified() && !local.Is4In6():
		choices = []string{"::1", "fd00::1", "fd00::2"}
	case local.Is4In6():
		choices = []string{"::ffff:127.0.0.1", "::ffff:10.9.0.1"}
	default:
		choices = []string{"::1", "fd00::1", "::ffff:127.0.0.1"}
		if v6only {
			choices = choices[:2]
		}
	}
	if b.chance(0.03) && fam == inet.IPv6 {
		choices = []string{"::ffff:127.0.0.1"} // ENETUNREACH when v6only
	}
	return netip.AddrPortFrom(netip.MustParseAddr(choices[b.pick(len(choices))]), srvPort)
}

// acceptChild accepts the pending connection on the listener fd, or on
// another listener of the case on the same port (a reuseport group hands
// the connection to any member). It returns the child and the listener
// that accepted it.
func (b *batch) acceptChild(fd int) (kSock, Socket, error) {
	fds := []int{fd}
	socks := []Socket{b.srv.sock}
	for _, k := range b.world {
		if k.fd == fd {
			socks[0] = k.sock
		}
	}
	for _, k := range b.world {
		if k.fd >= 0 && k.fd != fd && k.sock.State == Listen && k.sock.Local.Port() == socks[0].Local.Port() {
			fds = append(fds, k.fd)
			socks = append(socks, k.sock)
		}
	}
	pfds := make([]unix.PollFd, len(fds))
	for i, f := range fds {
		pfds[i] = unix.PollFd{Fd: int32(f), Events: unix.POLLIN}
	}
	n, err := unix.Poll(pfds, 2000)
	if err != nil || n == 0 {
		return kSock{}, Socket{}, fmt.Errorf("no connection to accept (poll: %v)", err)
	}
	for i, p := range pfds {
		if p.Revents&unix.POLLIN == 0 {
			continue
		}
		cfd, _, err := unix.Accept4(fds[i], unix.SOCK_CLOEXEC)
		if err != nil {
			return kSock{}, Socket{}, fmt.Errorf("accept: %w", err)
		}
		return kSock{fd: cfd}, socks[i], nil
	}
	return kSock{}, Socket{}, fmt.Errorf("no listener ready")
}

// acceptFrom accepts on the listener fd until it gets the child whose peer
// is client, closing children of earlier connections that completed late.
func (b *batch) acceptFrom(fd int, client netip.AddrPort) (kSock, Socket, error) {
	for range 8 {
		child, l, err := b.acceptChild(fd)
		if err != nil {
			return child, l, err
		}
		var cs Socket
		observe(child.fd, &cs)
		if cs.Remote.Port() == client.Port() && cs.Remote.Addr().Unmap() == client.Addr().Unmap() {
			return child, l, nil
		}
		unix.Close(child.fd)
	}
	return kSock{}, Socket{}, fmt.Errorf("no child for %s", client)
}

// closeCase closes every descriptor of the case.
func (b *batch) closeCase() {
	b.opStarted = 0 // the next case's checks stamp their own operations
	for _, k := range b.world {
		if k.fd >= 0 {
			unix.Close(k.fd)
		}
	}
	b.world = b.world[:0]
	b.log = b.log[:0]
	clear(b.bucketHistory)
	clear(b.cacheHistory)
}

// departed records that a socket that bound port through bind() left.
func (b *batch) departed(s Socket) {
	if s.Proto != inet.TCP || s.PortFromConnect || s.Local.Port() == 0 {
		return
	}
	if b.cacheHistory == nil {
		b.cacheHistory = map[uint16]bool{}
	}
	b.cacheHistory[s.Local.Port()] = true
	if b.bindMarked == nil {
		b.bindMarked = map[uint16]bool{}
	}
	b.bindMarked[s.Local.Port()] = true
	b.logf("port %d: %s left after binding it (reuse cache history)", s.Local.Port(), s.ID)
}

func (b *batch) runCase(base uint16) error {
	defer b.closeCase()
	b.cases++
	// Namespace settings for this case.
	k := uint16(b.pick(4))
	b.host.EphemeralRange = inet.PortRange{Lo: base, Hi: base + k}
	b.host.ReservedPorts = nil
	reserved := ""
	if b.chance(0.15) {
		r := base + uint16(b.pick(4))
		b.host.ReservedPorts = []inet.PortRange{{Lo: r, Hi: r}}
		reserved = strconv.Itoa(int(r))
	}
	b.host.AutobindReuse = b.chance(0.3)
	b.host.TCPTWReuse = b.pick(3)
	b.host.TWReuseDelay = time.Second
	if b.chance(0.5) {
		b.host.TWReuseDelay = time.Millisecond
	}
	timestamps := b.chance(0.8)
	b.host.BindV6Only = b.chance(0.1)
	b.host.NonlocalBind4 = b.chance(0.1)
	b.host.NonlocalBind6 = b.chance(0.1)
	for _, kv := range [][2]string{
		{"net/ipv4/ip_local_port_range", fmt.Sprintf("%d %d", base, base+k)},
		{"net/ipv4/ip_local_reserved_ports", reserved},
		{"net/ipv4/ip_autobind_reuse", strconv.Itoa(boolInt(b.host.AutobindReuse))},
		{"net/ipv4/tcp_tw_reuse", strconv.Itoa(b.host.TCPTWReuse)},
		{"net/ipv4/tcp_tw_reuse_delay", strconv.Itoa(int(b.host.TWReuseDelay / time.Millisecond))},
		{"net/ipv4/tcp_timestamps", strconv.Itoa(boolInt(timestamps))},
		{"net/ipv6/bindv6only", strconv.Itoa(boolInt(b.host.BindV6Only))},
		{"net/ipv4/ip_nonlocal_bind", strconv.Itoa(boolInt(b.host.NonlocalBind4))},
		{"net/ipv6/ip_nonlocal_bind", strconv.Itoa(boolInt(b.host.NonlocalBind6))},
	} {
		if err := b.setSysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	b.logf("range %d-%d reserved %q autobind_reuse %v tw_reuse %d delay %v timestamps %v bindv6only %v",
		base, base+k, reserved, b.host.AutobindReuse, b.host.TCPTWReuse, b.host.TWReuseDelay, timestamps, b.host.BindV6Only)

	if b.chance(0.3) {
		return b.classCase(base)
	}
	proto := inet.TCP
	if b.chance(0.3) {
		proto = inet.UDP
	}
	existing := 1 + b.pick(4)
	helperPort := base + 5
	crowdAt := -1 // before which existing socket the port's slot fills up
	if proto == inet.UDP && b.chance(0.3) {
		crowdAt = b.pick(existing + 1)
	}
	for i := 0; i <= existing; i++ {
		if i == crowdAt {
			if err := b.crowdPort(base); err != nil {
				return err
			}
		}
		if i == existing {
			break
		}
		port := base
		if b.chance(0.4) {
			port = base + uint16(b.pick(4))
		}
		if err := b.makeExisting(proto, i, port, &helperPort, timestamps); err != nil {
			return err
		}
	}
	return b.newSocketOp(proto, base)
}

// crowdPort binds 6 to 12 UDP sockets to port, most on an address of
// their own (127.0.1.x), some on the case's (127.0.0.1, the wildcard), a
// quarter through AF_INET6 (v4-mapped, or ::), so that the
// case's later binds meet a slot of the UDP hash holding more or fewer
// than ten sockets: past ten, bind() checks only the chains of its own
// address and of the wildcard (udp_lib_lport_inuse2). Each bind is
// checked against the model like any other.
func (b *batch) crowdPort(port uint16) error {
	n := 6 + b.pick(7)
	for i := range n {
		fam, addr := inet.IPv4, netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)})
		o := sockOpts{reuseAddr: b.chance(0.7), reusePort: b.chance(0.3)}
		if b.chance(0.2) {
			o.uid = 65534
		}
		if b.chance(0.3) { // among the case's own addresses, in their chains
			addr = netip.MustParseAddr([]string{"127.0.0.1", "0.0.0.0"}[b.pick(2)])
		}
		if b.chance(0.25) {
			fam, addr, o.v6only = inet.IPv6, netip.AddrFrom16(addr.As16()), 2
			if addr.Unmap().IsUnspecified() && b.chance(0.5) {
				addr = netip.IPv6Unspecified()
			}
		}
		fd, err := b.newSocket(inet.UDP, fam, o)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		x := &existing{id: fmt.Sprintf("c%d-f%d", b.caseNo, i), fd: fd, s: modelSocket(inet.UDP, fam, o)}
		x.s.ID = x.id
		if !b.existingStep(x, Op{Kind: OpBind, Addr: netip.AddrPortFrom(addr, port)}) {
			unix.Close(fd)
			continue
		}
		b.world = append(b.world, kSock{fd: fd, sock: x.s})
	}
	return nil
}

// portFor picks a port of the case's contended ports.
func (b *batch) portFor(base uint16) uint16 {
	if b.chance(0.6) {
		return base
	}
	return base + uint16(b.pick(4))
}

// makeExisting creates one existing socket of the case in a random state.
// Each step is itself checked against the model.
func (b *batch) makeExisting(proto inet.Proto, i int, port uint16, helperPort *uint16, timestamps bool) error {
	fam := inet.IPv4
	if b.chance(0.5) {
		fam = inet.IPv6
	}
	o := b.randOpts(fam)
	x := &existing{id: fmt.Sprintf("c%d-%d", b.caseNo, i)}
	x.kind = b.pick(6) // TCP: 0 bound, 1 listen, 2 client bound, 3 client connect-bound, 4 TIME_WAIT, 5 listener with child
	if proto == inet.UDP {
		x.kind = b.pick(3) // 0 bound, 1 bound+connected, 2 connect autobind
	}
	x.connectBound = (proto == inet.TCP && x.kind == 3) || (proto == inet.UDP && x.kind == 2) || (proto == inet.TCP && x.kind == 4 && b.chance(0.5))
	if x.connectBound {
		if b.chance(0.5) {
			o.portRange = inet.PortRange{Lo: port, Hi: port}
		} else if b.chance(0.3) {
			o.bindNoPort = true
		}
	}
	fd, err := b.newSocket(proto, fam, o)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	x.fd = fd
	x.s = modelSocket(proto, fam, o)
	x.s.ID = x.id
	keep, err := b.existingSteps(x, o, port, helperPort, timestamps)
	if !keep {
		if x.s.State == Bound && x.s.Local.Port() != 0 {
			b.departed(x.s)
		}
		unix.Close(fd)
	}
	return err
}

// existing is an existing socket of a case while makeExisting builds it.
type existing struct {
	id           string
	fd           int
	s            Socket // the model's view, moved on after each step
	kind         int    // its final state (makeExisting)
	connectBound bool   // its port comes from connect()
}

// existingSteps binds, listens or connects x as its kind says; keep
// reports whether x's descriptor now belongs to the world.
func (b *batch) existingSteps(x *existing, o sockOpts, port uint16, helperPort *uint16, timestamps bool) (keep bool, err error) {
	local := b.randAddr(x.s.Family)
	if !x.connectBound || o.bindNoPort {
		bport := port
		if o.bindNoPort {
			bport = 0
		}
		if !b.existingStep(x, Op{Kind: OpBind, Addr: netip.AddrPortFrom(local, bport)}) {
			return false, nil
		}
	}
	proto, kind, s := x.s.Proto, x.kind, x.s
	switch {
	case proto == inet.TCP && (kind == 1 || kind == 5):
		if !b.existingStep(x, Op{Kind: OpListen}) {
			return false, nil
		}
		b.world = append(b.world, kSock{fd: x.fd, sock: x.s})
		if kind == 5 && b.host.local(x.s.Local.Addr()) {
			return true, b.connectToListener(x.s, x.fd, helperPort)
		}
		return true, nil
	case (proto == inet.TCP && kind >= 2 && kind <= 4 || proto == inet.UDP && kind >= 1) && (s.State == Unbound || b.host.local(s.Local.Addr())):
		return b.existingConnect(x, timestamps)
	}
	b.world = append(b.world, kSock{fd: x.fd, sock: x.s})
	return true, nil
}

// existingStep does op (bind or listen) on x, checks it and moves x on;
// false when it failed or the model disagreed.
func (b *batch) existingStep(x *existing, op Op) bool {
	var kerr error
	b.startOp()
	if op.Kind == OpBind {
		kerr = unix.Bind(x.fd, sockaddr.From(op.Addr))
	} else {
		kerr = unix.Listen(x.fd, 16)
	}
	bad := b.bad
	out := b.check(x.s, op, kerr)
	if kerr != nil || b.bad != bad {
		return false
	}
	x.s = out.After
	observe(x.fd, &x.s)
	return true
}

// existingConnect connects x to the server (TCP) or port 9 (UDP) and
// checks it; a TCP client of kind 4 then closes first into TIME_WAIT.
func (b *batch) existingConnect(x *existing, timestamps bool) (keep bool, err error) {
	s := x.s
	peer := b.peerFor(s.Family, s.Local.Addr(), s.V6Only || (s.V6OnlyDefault && b.host.BindV6Only))
	if s.Proto == inet.UDP {
		peer = netip.AddrPortFrom(peer.Addr(), 9)
	}
	op := Op{Kind: OpConnect, Addr: peer}
	boundWildcard := s.State == Bound && s.Local.Port() != 0 && s.Local.Addr().Unmap().IsUnspecified()
	b.startOp()
	kerr, established := connectFD(x.fd, s.Proto, peer)
	bad, residual := b.bad, b.residualCount()
	out := b.checkPort(s, op, kerr, localPort(x.fd))
	if kerr != nil || b.bad != bad {
		return false, nil
	}
	bindAddr := s.Local.Addr()
	if b.residualCount() != residual {
		// A residual class: the kernel connected where the model did not.
		// The connection exists, so the world goes on from the kernel's
		// view of it (closing it would leave an entry the world never saw).
		out.After = s
		out.After.State = Connected
	}
	s = out.After
	observe(x.fd, &s)
	if s.State != Unbound && bindAddr.IsValid() && bindAddr != s.Local.Addr() && !x.connectBound {
		s.BindAddr = bindAddr
	}
	s.PortFromConnect = x.connectBound
	x.s = s
	b.noteBucketHistory(s, boundWildcard)
	b.dropTakenOver(s)
	if !established {
		b.logf("%s: connect to %s did not complete; dropped", x.id, peer)
		return false, nil
	}
	if s.Proto == inet.UDP {
		b.world = append(b.world, kSock{fd: x.fd, sock: s})
		return true, nil
	}
	child, _, err := b.acceptFrom(b.srv.fd, s.Local)
	if err != nil {
		return true, err
	}
	child.sock = Socket{ID: x.id + "-srvchild", Proto: inet.TCP, Family: inet.IPv6, State: Connected, ReuseAddr: true}
	observe(child.fd, &child.sock)
	if x.kind != 4 {
		b.world = append(b.world, kSock{fd: x.fd, sock: s}, child)
		return true, nil
	}
	return false, b.clientTimeWait(x, child, timestamps)
}

// clientTimeWait closes client x first (its server-side child after it),
// which leaves x's four-tuple in TIME_WAIT; the entry joins the world.
func (b *batch) clientTimeWait(x *existing, child kSock, timestamps bool) error {
	before := monoNanos()
	if err := unix.Shutdown(x.fd, unix.SHUT_WR); err != nil {
		unix.Close(child.fd)
		return fmt.Errorf("shutdown: %w", err)
	}
	unix.Close(child.fd)
	if err := waitClosed(x.fd); err != nil {
		return err
	}
	x.s.State = TimeWait
	x.s.TWTimestamps = timestamps
	b.twCreated(x.s.ID, before)
	b.world = append(b.world, kSock{fd: -1, sock: x.s})
	b.logf("%s is now TIME_WAIT %s -> %s", x.id, x.s.Local, x.s.Remote)
	return nil
}

// dropTakenOver removes TIME_WAIT entries whose four-tuple the socket s
// now holds: the kernel kills an entry it reuses. A device-bound entry
// matches only a socket bound to the same device (inet_match compares the
// bound device), so the kernel keeps it beside a socket of another.
func (b *batch) dropTakenOver(s Socket) {
	kept := b.world[:0]
	for _, k := range b.world {
		if k.sock.State == TimeWait && k.sock.Proto == s.Proto && k.sock.Local.Port() == s.Local.Port() &&
			k.sock.Remote.Port() == s.Remote.Port() && k.sock.Remote.Addr().Unmap() == s.Remote.Addr().Unmap() &&
			k.sock.Local.Addr().Unmap() == s.Local.Addr().Unmap() && (k.sock.Dev == 0 || k.sock.Dev == s.Dev) {
			b.logf("%s was taken over", k.sock.ID)
			b.departed(k.sock)
			continue
		}
		kept = append(kept, k)
	}
	b.world = kept
}

// connectFD connects fd to peer. For TCP it does not wait inside
// connect(): the port is chosen before the SYN leaves, so EINPROGRESS is
// the kernel's "ok"; established reports whether the handshake completed.
func connectFD(fd int, p inet.Proto, peer netip.AddrPort) (kerr error, established bool) {
	if p == inet.UDP {
		err := unix.Connect(fd, sockaddr.From(peer))
		return err, err == nil
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return err, false
	}
	defer unix.SetNonblock(fd, false)
	err := unix.Connect(fd, sockaddr.From(peer))
	if err != nil && err != unix.EINPROGRESS {
		return err, false
	}
	if err == nil {
		return nil, true
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if n, err := unix.Poll(pfd, 2000); err != nil || n == 0 {
		return nil, false
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	return nil, err == nil && soerr == 0
}

// noteBucketHistory records the port when s, bound to a wildcard address
// through bind(), now holds a source address that connect()-bound owners
// of the port already hold (see batch.bucketHistory).
func (b *batch) noteBucketHistory(s Socket, boundWildcard bool) {
	if !boundWildcard || s.PortFromConnect || s.Proto != inet.TCP {
		return
	}
	for _, k := range b.world {
		o := k.sock
		if o.Proto == inet.TCP && o.PortFromConnect && o.Local.Port() == s.Local.Port() && o.Local.Addr().Unmap() == s.Local.Addr().Unmap() {
			if b.bucketHistory == nil {
				b.bucketHistory = map[uint16]bool{}
			}
			b.bucketHistory[s.Local.Port()] = true
			b.logf("port %d: bucket history (bind()-origin socket joined a connect()-only address bucket)", s.Local.Port())
		}
	}
}

// dropBindCap clears CAP_NET_BIND_SERVICE from this thread's effective
// capabilities (capset is per thread) and returns a function restoring it.
func dropBindCap() (restore func(), err error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil, err
	}
	saved := data
	data[0].Effective &^= 1 << unix.CAP_NET_BIND_SERVICE
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return nil, err
	}
	return func() { unix.Capset(&hdr, &saved[0]) }, nil
}

// waitClosed waits until the kernel moved the client to TIME_WAIT (its
// socket shows CLOSE once the timewait entry took over).
func waitClosed(fd int) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return fmt.Errorf("TCP_INFO: %w", err)
		}
		if info.State == 7 { // TCP_CLOSE
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("client still in state %d", info.State)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// connectToListener connects a helper client (bound to its own port) to
// the listener l and accepts the child, which owns l's port.
func (b *batch) connectToListener(l Socket, lfd int, helperPort *uint16) error {
	dst := l.Local.Addr()
	fam := l.Family
	if dst.Unmap().IsUnspecified() {
		switch {
		case fam == inet.IPv4 || dst.Is4In6():
			dst = netip.MustParseAddr("127.0.0.1")
		case l.V6Only:
			dst = netip.MustParseAddr("fd00::1")
		default:
			dst = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("fd00::1")}[b.pick(2)]
		}
	}
	cfam := inet.IPv4
	if dst.Is6() && !dst.Is4In6() {
		cfam = inet.IPv6
	}
	dst = dst.Unmap()
	cfd, err := b.newSocket(inet.TCP, cfam, sockOpts{})
	if err != nil {
		return err
	}
	port := *helperPort
	*helperPort++
	src := netip.AddrPortFrom(netip.IPv4Unspecified(), port)
	if cfam == inet.IPv6 {
		src = netip.AddrPortFrom(netip.IPv6Unspecified(), port)
	}
	if err := unix.Bind(cfd, sockaddr.From(src)); err != nil {
		unix.Close(cfd)
		return fmt.Errorf("helper bind %s: %w", src, err)
	}
	// The batch waited for every address's local route (waitAddrs).
	if err := unix.Connect(cfd, sockaddr.From(netip.AddrPortFrom(dst, l.Local.Port()))); err != nil {
		unix.Close(cfd)
		return fmt.Errorf("helper connect %s:%d: %w", dst, l.Local.Port(), err)
	}
	cs := Socket{ID: l.ID + "-helper", Proto: inet.TCP, Family: cfam, State: Connected}
	observe(cfd, &cs)
	b.world = append(b.world, kSock{fd: cfd, sock: cs})
	// accept() sets the child's sk_uid to the accepting thread's fsuid
	// (sock_graft), not the listener's.
	acceptUID := uint32(0)
	if b.chance(0.5) {
		acceptUID = l.UID
	}
	if acceptUID != 0 {
		if err := unix.Setfsuid(int(acceptUID)); err != nil {
			return err
		}
	}
	child, l, err := b.acceptFrom(lfd, cs.Local)
	unix.Setfsuid(0)
	if err != nil {
		return err
	}
	child.sock = Socket{ID: l.ID + "-child", Proto: inet.TCP, Family: l.Family, State: Connected,
		ReuseAddr: l.ReuseAddr, ReusePort: l.ReusePort, UID: acceptUID}
	observe(child.fd, &child.sock)
	b.logf("%s accepted %s <- %s", child.sock.ID, child.sock.Local, child.sock.Remote)
	if !b.chance(0.3) {
		b.world = append(b.world, child)
		return nil
	}
	// The server side closes first: the child becomes a TIME_WAIT entry on
	// the listener's port (with the child's reuse options).
	b.world = b.world[:len(b.world)-1] // the helper closes too
	before := monoNanos()
	if err := unix.Shutdown(child.fd, unix.SHUT_WR); err != nil {
		unix.Close(child.fd)
		unix.Close(cfd)
		return fmt.Errorf("shutdown child: %w", err)
	}
	unix.Close(cfd)
	err = waitClosed(child.fd)
	unix.Close(child.fd)
	if err != nil {
		return err
	}
	child.sock.State = TimeWait
	child.sock.TWTimestamps = b.sysctl["net/ipv4/tcp_timestamps"] == "1"
	b.twCreated(child.sock.ID, before)
	b.world = append(b.world, kSock{fd: -1, sock: child.sock})
	b.logf("%s is now TIME_WAIT %s -> %s", child.sock.ID, child.sock.Local, child.sock.Remote)
	return nil
}

// newSocketOp is the case's new socket and its operation(s).
func (b *batch) newSocketOp(proto inet.Proto, base uint16) error {
	n, err := b.newCaseSocket(proto, base)
	if err != nil || n == nil {
		return err
	}
	defer unix.Close(n.fd)
	switch {
	case proto == inet.TCP && n.kind == 0:
		if n.bind(b.portFor(base)) && b.chance(0.6) {
			n.listen()
		}
	case proto == inet.TCP && n.kind == 1:
		if n.bind(0) && b.chance(0.5) {
			n.listen()
		}
	case proto == inet.TCP && n.kind == 2:
		n.listen()
	case proto == inet.TCP && n.kind == 3, proto == inet.UDP && n.kind == 2:
		if n.o.bindNoPort && !n.bind(0) {
			return nil
		}
		n.connect()
	case proto == inet.TCP && n.kind == 4:
		if n.bind(0) {
			n.connect()
		}
	case proto == inet.TCP && n.kind == 5, proto == inet.UDP && n.kind == 3:
		if n.bind(b.portFor(base)) {
			n.connect()
		}
	case proto == inet.UDP && n.kind == 0:
		n.bind(b.portFor(base))
	case proto == inet.UDP && n.kind == 1:
		n.bind(0)
	}
	return nil
}

// newSock is a case's new socket: the kernel's descriptor and the model's
// view of it, which each checked operation moves on.
type newSock struct {
	b          *batch
	fd         int
	s          Socket
	o          sockOpts
	kind       int // which operations it does (newSocketOp)
	privileged bool
	base       uint16
	local      netip.Addr // the address it binds
}

// newCaseSocket picks the new socket's options and operations and creates
// it; nil (and no error) when the kernel refuses its port range option.
func (b *batch) newCaseSocket(proto inet.Proto, base uint16) (*newSock, error) {
	fam := inet.IPv4
	if b.chance(0.5) {
		fam = inet.IPv6
	}
	n := &newSock{b: b, o: b.randOpts(fam), base: base}
	n.kind = b.pick(6) // TCP: 0 bind(+listen), 1 bind 0 (+listen), 2 listen unbound, 3 connect unbound, 4 bind-no-port + connect, 5 bind + connect
	if proto == inet.UDP {
		n.kind = b.pick(4) // 0 bind, 1 bind 0, 2 connect unbound, 3 bind + connect
		if n.kind == 2 && b.chance(0.3) {
			n.o.bindNoPort = true
		}
	}
	if proto == inet.TCP && n.kind == 4 {
		n.o.bindNoPort = true
	}
	if b.chance(0.25) {
		lo := base + uint16(b.pick(4))
		n.o.portRange = inet.PortRange{Lo: lo, Hi: lo + uint16(b.pick(3))}
		if b.chance(0.2) {
			n.o.portRange.Lo = 1000 // outside the namespace range: ignored
		}
	}
	if (proto == inet.TCP && n.kind == 5) || (proto == inet.UDP && n.kind == 3) {
		n.o.reuseAddr = b.chance(0.8)
	}
	n.o.freebind = b.chance(0.1)
	// Privileged port: ports below ip_unprivileged_port_start need
	// CAP_NET_BIND_SERVICE, which this thread drops for the bind.
	n.privileged = n.kind == 0 && b.chance(0.06)
	if n.privileged {
		b.host.UnprivilegedPortStart = base
		if err := b.setSysctl("net/ipv4/ip_unprivileged_port_start", strconv.Itoa(int(base))); err != nil {
			return nil, err
		}
	}
	fd, err := b.newSocket(proto, fam, n.o)
	if err != nil {
		if errors.Is(err, unix.EINVAL) && !n.o.portRange.IsZero() {
			return nil, nil
		}
		return nil, fmt.Errorf("new socket: %w", err)
	}
	n.fd = fd
	n.s = modelSocket(proto, fam, n.o)
	n.s.ID = "new"
	n.s.CanBindPrivileged = !n.privileged
	n.local = b.randAddr(fam)
	return n, nil
}

// step checks op, which the kernel answered with kerr, and moves the
// model's socket on from the kernel's; false when the case stops here (the
// operation failed, or the model disagreed).
func (n *newSock) step(op Op, kerr error) bool {
	b := n.b
	bad := b.bad + b.residualCount()
	out := b.checkPort(n.s, op, kerr, localPort(n.fd))
	if kerr != nil || out.Err != 0 || b.bad+b.residualCount() != bad {
		return false
	}
	got := Socket{Family: n.s.Family}
	observe(n.fd, &got)
	n.checkChosenPort(op, out, got.Local.Port())
	if got.Family == inet.IPv6 && got.V6Only != out.After.V6Only {
		b.disagree(b.worldNow(), n.s, op, out, fmt.Sprintf("kernel v6only %v, model %v", got.V6Only, out.After.V6Only))
	}
	n.s = out.After
	n.s.Local = got.Local
	if !got.Remote.IsValid() {
		n.s.Remote = netip.AddrPort{}
	}
	return true
}

// checkChosenPort checks the port kp the kernel's autobind (bind(0),
// listen(), connect()) chose against the model's candidates: the one port
// when the model names it, else one the model counts, always in range.
func (n *newSock) checkChosenPort(op Op, out Outcome, kp uint16) {
	b, s := n.b, n.s
	// A TCP connect() may take a port the model counts held through bind()
	// when the port's bucket has history (batch.bucketHistory).
	excused := func() bool {
		if op.Kind == OpConnect && s.Proto == inet.TCP && b.bucketHistory[kp] {
			b.excuse("bind-bucket-history", kp)
			return true
		}
		return false
	}
	if p := out.After.Local.Port(); p != 0 && p != kp && !b.choosesAcrossTick(s, op, kp) && !excused() {
		b.disagree(b.worldNow(), s, op, out, fmt.Sprintf("kernel chose port %d, model %d (of %d candidates)", kp, p, out.Candidates))
	}
	if out.Candidates > 1 && kp != 0 && s.Local.Port() == 0 && !b.countsAcrossTick(s, op, kp) && !excused() {
		b.disagree(b.worldNow(), s, op, out, fmt.Sprintf("kernel chose port %d, which the model does not count as a candidate", kp))
	}
	if out.Candidates > 0 && kp != 0 && !b.host.EphemeralRange.Contains(kp) {
		b.disagree(b.worldNow(), s, op, out, fmt.Sprintf("kernel chose port %d outside the range", kp))
	}
}

// bind binds the new socket to port (its privileged port when the case
// says so, with CAP_NET_BIND_SERVICE dropped) and checks it.
func (n *newSock) bind(port uint16) bool {
	op := Op{Kind: OpBind, Addr: netip.AddrPortFrom(n.local, port)}
	if !n.privileged {
		n.b.startOp()
		return n.step(op, unix.Bind(n.fd, sockaddr.From(op.Addr)))
	}
	op.Addr = netip.AddrPortFrom(n.local, n.base-1)
	restore, err := dropBindCap()
	if err != nil {
		n.b.t.Errorf("drop CAP_NET_BIND_SERVICE: %v", err)
		return false
	}
	n.b.startOp()
	kerr := unix.Bind(n.fd, sockaddr.From(op.Addr))
	restore()
	return n.step(op, kerr)
}

func (n *newSock) listen() bool {
	n.b.startOp()
	return n.step(Op{Kind: OpListen}, unix.Listen(n.fd, 16))
}

// connect connects the new socket, often to a peer whose four-tuple an
// existing client holds, and checks it.
func (n *newSock) connect() bool {
	b, s := n.b, n.s
	if s.State != Unbound && !b.host.local(s.Local.Addr()) {
		return false // routing from a non-local source is not a port rule
	}
	peer := n.peer()
	b.startOp()
	kerr, established := connectFD(n.fd, s.Proto, peer)
	ok := n.step(Op{Kind: OpConnect, Addr: peer}, kerr)
	if ok && s.Proto == inet.TCP && established {
		child, _, err := b.acceptFrom(b.srv.fd, n.s.Local)
		if err == nil {
			unix.Close(child.fd)
		}
	}
	return ok
}

// peer is the new socket's connect() peer: the server, at an address an
// existing client's four-tuple often holds (TCP), or port 9 (UDP).
func (n *newSock) peer() netip.AddrPort {
	b, s := n.b, n.s
	v6only := s.V6Only || (s.V6OnlyDefault && b.host.BindV6Only)
	peer := b.peerFor(s.Family, s.Local.Addr(), v6only)
	if s.Proto == inet.UDP {
		return netip.AddrPortFrom(peer.Addr(), 9)
	}
	if !b.chance(0.7) {
		return peer
	}
	for _, k := range b.world {
		if k.sock.Remote.Port() == srvPort && b.chance(0.6) {
			r := k.sock.Remote.Addr()
			if s.Family == inet.IPv4 && (r.Is4() || r.Is4In6()) {
				peer = netip.AddrPortFrom(r.Unmap(), srvPort)
			} else if s.Family == inet.IPv6 && !v6only {
				peer = netip.AddrPortFrom(netip.AddrFrom16(r.As16()), srvPort)
			}
		}
	}
	return peer
}

func slicesSort(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// residualCount is how many disagreements of documented residual classes
// the batch has seen (a step compares it before and after to learn whether
// its own check was one; the number of classes would not change on a
// class's second occurrence).
func (b *batch) residualCount() int {
	n := 0
	for _, v := range b.residual {
		n += v
	}
	return n
}
