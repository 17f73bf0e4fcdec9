package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/reexec"
	"github.com/tuple-net/tuple/internal/syncio"
	"github.com/tuple-net/tuple/netns"
	"github.com/tuple-net/tuple/rules"
)

// Runner runs scenarios. The zero value re-executes the running binary as
// HelperCommand helpers (so the binary's main, or a test's TestMain, calls
// reexec.Main first) and asks rules.Predict.
type Runner struct {
	// Predict is the rules model; nil means rules.Predict.
	Predict Predictor
	// Wait bounds a connect's handshake and a close's wait for TIME_WAIT;
	// zero means 2 s.
	Wait time.Duration
	// HelperTimeout bounds each exchange with a helper beyond Wait: a
	// helper silent that long has failed the run. Zero means 10 s; an
	// emulated guest on a loaded host needs more.
	HelperTimeout time.Duration
	// Kernel is the kernel whose rules the model applies; nil means the
	// running kernel (its version and probed features).
	Kernel *rules.Kernel
}

// kernel is the kernel the model follows: Runner.Kernel, or the running
// one (the newest rules when it cannot be read).
func (r *Runner) kernel() rules.Kernel {
	if r.Kernel != nil {
		return *r.Kernel
	}
	k, err := hostmodel.RunningKernel()
	if err != nil {
		return rules.Kernel{}
	}
	k.UDPWildcardFix = hostmodel.ProbeUDPWildcardFix() // the lab runs as root
	return k
}

// monoSec is CLOCK_MONOTONIC's whole seconds, the lab's stand-in for the
// kernel's ktime_get_seconds(). That one follows CLOCK_MONOTONIC_COARSE,
// whose second begins up to a tick later (longer in a TCG guest): the
// step's re-ask (reaskAcrossTick, which reads the coarse clock too) and
// the entries' dating (twDating) absorb the gap.
func monoSec() int64 { return monoNanos() / int64(time.Second) }

// coarseSec is CLOCK_MONOTONIC_COARSE's whole seconds, which
// ktime_get_seconds() reads, -1 when unreadable.
func coarseSec() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts) != nil {
		return -1
	}
	return ts.Sec
}

// monoNanos is CLOCK_MONOTONIC in nanoseconds, 0 when unreadable.
func monoNanos() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// reaskAcrossTick asks the model again where a kernel that compares whole
// seconds (TIME_WAIT reuse before 6.13) may have read other seconds than
// the model was given, before the world changes, and returns the first
// answer that agrees with the kernel's (kernel); ok is false where none
// does or the seconds cannot have differed:
//   - the second changed between the model's answer (asked, CLOCK_MONOTONIC
//     nanoseconds) and the kernel's: the kernel read it at some moment
//     between, so the model is asked at the later end;
//   - the kernel's clock (the coarse one, coarse seconds just before the
//     kernel was asked) was still in an earlier second: the kernel may
//     have read that one, so the model is asked as of it;
//   - a TIME_WAIT entry the kernel may have stamped a second before the lab
//     dated it (its coarse clock was still in that second before the
//     close), or a second after (the entry's bounds lie in two seconds
//     and the lab took the middle's): the model is asked with the entry
//     so dated, the earlier first.
func (s *session) reaskAcrossTick(w *world, e *entry, op rules.Op, asked, coarse int64, kernel string) (rules.Outcome, bool) {
	askedSec := asked / int64(time.Second)
	agrees := func() (rules.Outcome, bool) {
		out := w.predict(s.r.predict(), e, op, time.Now())
		return out, out.ErrName() == kernel
	}
	if w.monoSec() != askedSec {
		return agrees()
	}
	if c := coarse; c >= 0 && c < askedSec {
		mono := w.monoSec
		w.monoSec = func() int64 { return c }
		out, ok := agrees()
		w.monoSec = mono
		if ok {
			return out, true
		}
	}
	for _, restamp := range []func() (func(), bool){w.earliestStamps, w.latestStamps} {
		restore, moved := restamp()
		if !moved {
			continue
		}
		out, ok := agrees()
		restore()
		if ok {
			return out, true
		}
	}
	return rules.Outcome{}, false
}

// helperProc is one running helper and the runner's end of its control
// socket.
type helperProc struct {
	uid  uint32
	cmd  *exec.Cmd
	conn *net.UnixConn
	errb *syncio.Buffer // the helper's standard error, the first 4 KiB
}

// session is one scenario's namespace and helpers.
type session struct {
	r       *Runner
	ctx     context.Context
	helpers map[helperKey]*helperProc
	mu      sync.Mutex // guards helpers against the interrupt path
	// host is the topology host the current step runs on ("" for the
	// scenario's own namespace): helper finds and starts helpers there.
	host string
	topo *topoRun // nil without a topology
	dead bool
}

// Run runs sc in a fresh network namespace and returns a Result per step.
// The namespace and every helper are gone when Run returns, also when ctx
// is cancelled (the error is then ctx's). An error means the lab itself
// failed (no root, a helper died), not that a line was not ok.
func (r *Runner) Run(ctx context.Context, sc Scenario) (ScenarioResult, error) {
	start := time.Now()
	out := ScenarioResult{File: sc.File, Name: sc.Name, Line: sc.Line}
	if os.Geteuid() != 0 {
		return out, errors.New("tuple lab needs root to create network namespaces and switch uids")
	}
	s := &session{r: r, ctx: ctx, helpers: map[helperKey]*helperProc{}}
	defer s.teardown()
	stop := context.AfterFunc(ctx, s.teardown)
	defer stop()
	res, err := s.run(sc)
	out.Results = res
	out.Duration = time.Since(start).Seconds()
	if ctx.Err() != nil {
		return out, ctx.Err()
	}
	return out, err
}

func (r *Runner) wait() time.Duration {
	if r.Wait > 0 {
		return r.Wait
	}
	return 2 * time.Second
}

// helperTimeout is how long a helper may take to answer one request.
func (r *Runner) helperTimeout() time.Duration {
	if r.HelperTimeout > 0 {
		return r.wait() + r.HelperTimeout
	}
	return r.wait() + 10*time.Second
}

func (r *Runner) predict() Predictor {
	if r.Predict != nil {
		return r.Predict
	}
	return rules.Predict
}

func (s *session) run(sc Scenario) ([]Result, error) {
	root, err := s.helper(0)
	if err != nil {
		return nil, err
	}
	added := sc.Addrs()
	var addrs []string
	for _, a := range added {
		addrs = append(addrs, a.String())
	}
	if _, err := s.call(root, request{Op: "setup", Addrs: addrs}, -1); err != nil {
		return nil, err
	}
	w := newWorld()
	w.kernel, w.monoSec = s.r.kernel(), monoSec
	if err := s.readHost(w); err != nil {
		return nil, err
	}
	worlds := map[string]*world{"": w}
	if !sc.Topology.Empty() {
		if worlds, err = s.startTopology(sc.Topology, w); err != nil {
			return nil, err
		}
	}
	protos := map[string]Proto{}
	var results []Result
	for _, st := range sc.Steps {
		res := Result{File: sc.File, Scenario: sc.Name, Line: st.Line, Socket: st.Sock, Op: st.Op, Expect: st.Expect}
		if st.Kind == KindSocket || st.Kind == KindServer {
			protos[st.Sock] = st.Proto
		}
		s.host, w = st.Host, worlds[st.Host]
		st = s.topo.resolvePort(st, w)
		path, err := s.beforeStep(w, st, protos[st.Sock])
		if err == nil {
			err = s.step(w, st, protos[st.Sock], &res)
		}
		if err == nil {
			err = s.afterStep(w, st, path, &res)
		}
		if err != nil {
			return results, fmt.Errorf("%s:%d: %w", sc.File, st.Line, err)
		}
		w.markBound()
		res.settle()
		results = append(results, res)
	}
	return results, nil
}

// readHost reads the namespace's facts (sysctls, lo's addresses) into the
// model's Host.
func (s *session) readHost(w *world) error {
	rep, err := s.call(s.helpers[helperKey{s.host, 0}], request{Op: "host", All: s.host != ""}, -1)
	if err != nil {
		return err
	}
	w.setHost(rep.Sysctls, rep.Addrs)
	// A topology host has links beyond lo: addresses it does not have
	// are routed (or not) by its routes, which the model does not read.
	w.host.Isolated = w.host.Isolated && s.host == ""
	return nil
}

// step runs one line: the model's prediction first (from the world as the
// kernel left it), then the kernel, then the world is updated from what the
// kernel says.
func (s *session) step(w *world, st Step, proto Proto, res *Result) error {
	switch st.Kind {
	case KindSleep:
		return s.sleepStep(st.Sleep, res)
	case KindSysctl:
		rep, err := s.call(s.helpers[helperKey{s.host, 0}], request{Op: "sysctl", Key: st.Key, Value: st.Value}, -1)
		if err != nil {
			return err
		}
		res.Kernel = errName(rep.Errno)
		if rep.Errno != 0 {
			res.Why = sysctlRefused(st, syscall.Errno(rep.Errno))
		}
		return s.readHost(w)
	case KindSocket, KindServer:
		return s.createStep(w, st, proto, res)
	}
	e := w.named(st.Sock)
	if e == nil { // its socket or server line failed
		w.failedSocketStep(st.Sock, res)
		return nil
	}
	h, err := s.helper(e.holder)
	if err != nil {
		return err
	}
	req := request{Op: st.Kind.String(), Sock: st.Sock, Proto: proto, Wait: int(s.r.wait().Milliseconds())}
	switch st.Kind {
	case KindClose:
		if e.sock.Proto == inet.TCP && e.sock.State == rules.Listen {
			return s.closeListener(w, e, req, res)
		}
		return s.closeStep(w, e, h, req, res)
	case KindPass:
		return s.pass(e, st, proto, res)
	}
	return s.socketStep(w, e, h, st, req, res)
}

// sysctlRefused says in words why the kernel refused a sysctl line: the
// errno's name and text, and what it means for a setting.
func sysctlRefused(st Step, errno syscall.Errno) string {
	what := errName(int(errno)) + " (" + errno.Error() + ")"
	if errno == syscall.ENOENT {
		return fmt.Sprintf("%s: the namespace has no %s (this kernel lacks it, or it is not a per-namespace setting)", what, st.Key)
	}
	return fmt.Sprintf("%s: the kernel refused %s=%s", what, st.Key, st.Value)
}

// sleepStep waits d, or until the run is cancelled.
func (s *session) sleepStep(d time.Duration, res *Result) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	res.Kernel = "ok"
	return nil
}

// createStep makes a socket or a server in its uid's helper and adds it to
// the world; a socket the kernel refused is remembered as failed.
func (s *session) createStep(w *world, st Step, proto Proto, res *Result) error {
	if e := w.named(st.Sock); e != nil {
		w.remove(e)
	}
	e := newEntry(st.Sock, st.Proto, st.Opts.UID)
	h, err := s.helper(st.Opts.UID)
	if err != nil {
		return err
	}
	// An option this kernel does not know fails the socket line
	// (ENOPROTOOPT); the model says so from the kernel's version.
	opt := rules.Socket{Proto: e.sock.Proto, PortRange: inet.PortRange{Lo: st.Opts.PortRange.Lo, Hi: st.Opts.PortRange.Hi}}
	if !opt.PortRange.IsZero() {
		res.Model = errName(int(w.kernel.SetOptionErr(opt)))
	}
	rep, err := s.call(h, request{Op: "socket", Sock: st.Sock, Proto: st.Proto, Opts: st.Opts}, -1)
	if err != nil {
		return err
	}
	res.Kernel = errName(rep.Errno)
	if rep.Errno != 0 {
		if res.Model == "" {
			res.Why = res.Kernel + " (" + syscall.Errno(rep.Errno).Error() + ")"
		}
		if w.failed == nil {
			w.failed = map[string]failedSock{}
		}
		w.failed[st.Sock] = failedSock{errno: res.Kernel, sock: opt}
		return nil
	}
	delete(w.failed, st.Sock)
	w.entries = append(w.entries, e)
	w.sync(e, proto, rep.Sock, KindSocket)
	if st.Kind == KindSocket {
		res.Local = localOf(e)
		return nil
	}
	return s.server(w, e, st, h, res)
}

// failedSocketStep is a line on a socket whose socket or server line
// failed: EBADF, or the same ENOPROTOOPT when the socket could not take
// its options on this kernel (the model, which knows the kernel, says the
// same).
func (w *world) failedSocketStep(name string, res *Result) {
	res.Kernel = "EBADF"
	f, ok := w.failed[name]
	if ok {
		res.Why = "no socket: its line failed (" + f.errno + ")"
	}
	if !ok || f.errno != "ENOPROTOOPT" {
		return
	}
	res.Kernel = f.errno
	res.Model = "ok"
	if e := w.kernel.SetOptionErr(f.sock); e != 0 {
		res.Model = errName(int(e))
	}
}

// closeStep closes a socket other than a TCP listener and records what
// the close left (TIME_WAIT, or another state).
func (s *session) closeStep(w *world, e *entry, h *helperProc, req request, res *Result) error {
	// The kernel stamps a TIME_WAIT when the FIN exchange ends, a little
	// after close() starts; the start is the nearest time seen here.
	closing := time.Now()
	req.Expect = w.closeImplies(e)
	if x := s.topo.closeExpect(e); x != "" {
		req.Expect = x // the peer is a server on another host
	}
	rep, err := s.call(h, req, -1)
	if err != nil {
		return err
	}
	res.Kernel = errName(rep.Errno)
	if rep.Closed != "" && rep.Closed != "TIME_WAIT" {
		res.Local = "left in " + rep.Closed
	} else if rep.Closed == "TIME_WAIT" {
		res.Local = localOf(e) + " in TIME_WAIT"
	}
	w.closed(e, rep.Closed, closing)
	w.stampTW(rep.TWSec, rep.TWEarliestSec, rep.TWLatestSec)
	return nil
}

// socketStep runs bind, connect or listen: the model's prediction, then
// the kernel's answer, then the world from what the kernel says.
func (s *session) socketStep(w *world, e *entry, h *helperProc, st Step, req request, res *Result) error {
	var op rules.Op
	switch st.Kind {
	case KindBind:
		op = rules.Op{Kind: rules.OpBind, Addr: w.port(st.Addr)}
	case KindConnect:
		op = rules.Op{Kind: rules.OpConnect, Addr: w.port(st.Addr)}
		// The source address the kernel's route lookup picks, so the model
		// compares four-tuples on facts rather than on a guess.
		rep, err := s.call(h, request{Op: "source", Proto: req.Proto, Addr: op.Addr.String()}, -1)
		if err != nil {
			return err
		}
		if rep.Errno == 0 && rep.Sock != nil {
			op.Source, _ = netip.ParseAddr(rep.Sock.Local)
		}
	case KindListen:
		op = rules.Op{Kind: rules.OpListen}
	}
	asked := monoNanos()
	out := w.predict(s.r.predict(), e, op, time.Now())
	res.Model = out.ErrName()
	req.Addr = op.Addr.String()
	coarse := coarseSec() // the kernel reads this clock, or a later second, during the call
	rep, err := s.call(h, req, -1)
	if err != nil {
		return err
	}
	res.Kernel = errName(rep.Errno)
	if res.Model != res.Kernel && w.monoSec != nil {
		if again, ok := s.reaskAcrossTick(w, e, op, asked, coarse, res.Kernel); ok {
			out, res.Model = again, again.ErrName()
		}
	}
	w.sync(e, req.Proto, rep.Sock, st.Kind)
	if st.Kind == KindConnect && rep.Errno == 0 {
		if err := s.accepted(w, e); err != nil {
			return err
		}
	}
	res.Local = localOf(e)
	if res.Model != "ok" || res.Model != res.Kernel {
		res.Why = out.Why
	}
	return nil
}

// accepted records a completed TCP connect's child and, when a server
// listens there, has the server accept it before the next line, so what a
// later close does never depends on when a server got round to accepting.
func (s *session) accepted(w *world, client *entry) error {
	child, l := w.connected(client)
	if child == nil || !l.server {
		return nil
	}
	h, err := s.helper(l.holder)
	if err != nil {
		return err
	}
	rep, err := s.call(h, request{Op: "accept", Sock: l.name, Proto: Proto(protoOf(l.sock)), Addr: client.sock.Local.String(), Wait: int(s.r.wait().Milliseconds())}, -1)
	if err != nil {
		return err
	}
	if other := w.named(rep.Where); other != nil && other != l {
		// Another server of the reuseport group took it.
		child.sock.ID = other.name + " (child of " + client.name + ")"
	}
	child.sock.AcceptQueue = ""
	return nil
}

// closeListener closes a listener. The connections it never accepted are
// reset (rules.Model.CloseListener says which); the kernel must show each
// reset peer in CLOSE within the wait, or the run fails rather than go on
// from a world the kernel does not hold.
func (s *session) closeListener(w *world, e *entry, req request, res *Result) error {
	h, err := s.helper(e.holder)
	if err != nil {
		return err
	}
	rep, err := s.call(h, req, -1)
	if err != nil {
		return err
	}
	res.Kernel = errName(rep.Errno)
	w.remove(e)
	reset, why := w.closeListener(e)
	for _, p := range reset {
		if p.name == "" {
			continue
		}
		ph, err := s.helper(p.holder)
		if err != nil {
			return err
		}
		if _, err := s.call(ph, request{Op: "state", Sock: p.name, Proto: Proto(protoOf(p.sock)), State: tcpClose, Wait: int(s.r.wait().Milliseconds())}, -1); err != nil {
			return fmt.Errorf("close %s should reset %s: %w", e.name, p.name, err)
		}
	}
	if len(reset) > 0 {
		res.Why = why
	}
	return nil
}

// protoOf spells a model socket's protocol as the format does.
func protoOf(s rules.Socket) string {
	p := "udp"
	if s.Proto == inet.TCP {
		p = "tcp"
	}
	if s.Family == inet.IPv6 {
		return p + "6"
	}
	return p + "4"
}

// server runs the bind, listen (TCP) and serve parts of a server line; the
// line's kernel and model results are the first failure of each.
func (s *session) server(w *world, e *entry, st Step, h *helperProc, res *Result) error {
	kinds := []rules.OpKind{rules.OpBind}
	if st.Proto.IsTCP() {
		kinds = append(kinds, rules.OpListen)
	}
	res.Model = ""
	for _, k := range kinds {
		op := rules.Op{Kind: k}
		if k == rules.OpBind {
			op.Addr = w.port(st.Addr)
		}
		out := w.predict(s.r.predict(), e, op, time.Now())
		if res.Model == "" || res.Model == "ok" {
			res.Model = out.ErrName()
			if !out.OK() {
				res.Why = out.Why
			}
		}
		rep, err := s.call(h, request{Op: k.String(), Sock: st.Sock, Proto: st.Proto, Addr: op.Addr.String()}, -1)
		if err != nil {
			return err
		}
		w.sync(e, st.Proto, rep.Sock, KindBind)
		res.Kernel = errName(rep.Errno)
		res.Local = localOf(e)
		if rep.Errno != 0 {
			// A server that cannot bind or listen does not exist.
			if _, err := s.call(h, request{Op: "close", Sock: st.Sock, Proto: st.Proto}, -1); err != nil {
				return err
			}
			w.remove(e)
			return nil
		}
	}
	rep, err := s.call(h, request{Op: "serve", Sock: st.Sock, Proto: st.Proto}, -1)
	if err != nil {
		return err
	}
	e.server = true
	if rep.Errno != 0 {
		res.Kernel = errName(rep.Errno)
	}
	return nil
}

// pass moves a socket's descriptor to the helper running as st.UID.
func (s *session) pass(e *entry, st Step, proto Proto, res *Result) error {
	from, err := s.helper(e.holder)
	if err != nil {
		return err
	}
	to, err := s.helper(st.UID)
	if err != nil {
		return err
	}
	fd, rep, err := s.callFD(from, request{Op: "give", Sock: st.Sock, Proto: proto})
	if err != nil {
		return err
	}
	if rep.Errno != 0 {
		res.Kernel = errName(rep.Errno)
		return nil
	}
	rep, err = s.call(to, request{Op: "take", Sock: st.Sock, Proto: proto}, fd)
	unix.Close(fd)
	if err != nil {
		return err
	}
	res.Kernel = errName(rep.Errno)
	e.holder = st.UID
	res.Local = localOf(e)
	return nil
}

func localOf(e *entry) string {
	if e.sock.Local.Port() == 0 && !e.sock.Remote.IsValid() {
		return ""
	}
	l := e.sock.Local.String()
	if e.sock.Remote.IsValid() && e.sock.Remote.Port() != 0 {
		l += " -> " + e.sock.Remote.String()
	}
	return l
}

// errName names an errno the way scenarios write it.
func errName(e int) string {
	if e == 0 {
		return "ok"
	}
	return rules.ErrnoName(syscall.Errno(e))
}

// helper returns the helper running as uid, starting it on first use. The
// root helper is started in a new network namespace; the others join it
// through a descriptor of that namespace before they drop to their uid.
func (s *session) helper(uid uint32) (*helperProc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil, context.Canceled
	}
	key := helperKey{s.host, uid}
	if h, ok := s.helpers[key]; ok {
		return h, nil
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	mine, theirs := os.NewFile(uintptr(pair[0]), "lab-control"), os.NewFile(uintptr(pair[1]), "lab-helper")
	defer theirs.Close()
	cmd, err := reexec.Command(HelperCommand, "--uid", strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		mine.Close()
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{theirs}
	errb := &syncio.Buffer{Max: 4096}
	cmd.Stderr = errb
	if root, ok := s.helpers[helperKey{s.host, 0}]; ok {
		ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", root.cmd.Process.Pid))
		if err != nil {
			mine.Close()
			return nil, err
		}
		defer ns.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, ns)
		cmd.Args = append(cmd.Args, "--netns-fd", "4")
	} else {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
	}
	start := cmd.Start
	if cmd.SysProcAttr.Cloneflags&syscall.CLONE_NEWNET != 0 {
		// Other namespaces' UDP sockets must not move the kernel's
		// answers (a port's slot past ten sockets).
		start = func() error { return netns.WithOwnUDPTable(cmd.Start) }
	}
	if err := start(); err != nil {
		mine.Close()
		return nil, fmt.Errorf("start lab helper: %w", err)
	}
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		_ = cmd.Process.Kill() // the helper is useless without its conn: end it, reap it, report err
		_ = cmd.Wait()
		return nil, err
	}
	h := &helperProc{uid: uid, cmd: cmd, conn: c.(*net.UnixConn), errb: errb}
	s.helpers[key] = h
	return h, nil
}

// call sends req (with descriptor fd when >= 0) and reads the reply.
func (s *session) call(h *helperProc, req request, fd int) (reply, error) {
	_, rep, err := s.roundTrip(h, req, fd, false)
	return rep, err
}

// callFD is call for a reply that carries a descriptor.
func (s *session) callFD(h *helperProc, req request) (int, reply, error) {
	return s.roundTrip(h, req, -1, true)
}

func (s *session) roundTrip(h *helperProc, req request, fd int, wantFD bool) (int, reply, error) {
	var rep reply
	msg, err := json.Marshal(req)
	if err != nil {
		return -1, rep, err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	deadline := time.Now().Add(s.r.helperTimeout())
	if err := h.conn.SetDeadline(deadline); err != nil {
		return -1, rep, s.helperFailed(h, req, err)
	}
	if _, _, err := h.conn.WriteMsgUnix(msg, oob, nil); err != nil {
		return -1, rep, s.helperFailed(h, req, err)
	}
	buf := make([]byte, maxPacket)
	oobBuf := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := h.conn.ReadMsgUnix(buf, oobBuf)
	if err == nil && n == 0 {
		err = errors.New("control socket closed")
	}
	if err != nil {
		return -1, rep, s.helperFailed(h, req, err)
	}
	fds, err := parseRights(oobBuf[:oobn])
	if err == nil {
		err = json.Unmarshal(buf[:n], &rep)
	}
	if err == nil && rep.Fail != "" {
		err = fmt.Errorf("lab helper (uid %d): %s %s: %s", h.uid, req.Op, req.Sock, rep.Fail)
	}
	if err == nil && wantFD && rep.Errno == 0 && len(fds) != 1 {
		err = fmt.Errorf("lab helper (uid %d): give %s: got %d descriptors", h.uid, req.Sock, len(fds))
	}
	if err != nil || !wantFD {
		closeFDs(fds)
		return -1, rep, err
	}
	if len(fds) == 0 {
		return -1, rep, nil
	}
	return fds[0], rep, nil
}

func (s *session) helperFailed(h *helperProc, req request, err error) error {
	if s.ctx.Err() != nil {
		return s.ctx.Err()
	}
	msg := strings.TrimSpace(h.errb.String())
	if msg != "" {
		return fmt.Errorf("lab helper (uid %d) failed during %s: %w: %s", h.uid, req.Op, err, msg)
	}
	return fmt.Errorf("lab helper (uid %d) failed during %s: %w", h.uid, req.Op, err)
}

// teardown kills every helper and waits for it; the namespace goes with
// the last of them. It runs at the end of Run and on cancellation.
func (s *session) teardown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return
	}
	s.dead = true
	for _, h := range s.helpers {
		h.conn.Close()
		// A helper that already died (its failure was reported) makes
		// Kill and Wait fail: nothing is left to report here.
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
	}
}
