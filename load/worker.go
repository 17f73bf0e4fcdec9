package load

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tuple-net/tuple/dial"
	"github.com/tuple-net/tuple/internal/reexec"
	"github.com/tuple-net/tuple/internal/sockaddr"
	"github.com/tuple-net/tuple/rules"
)

// workerName is the helper a worker runs as (argv[1], as ps shows it).
const workerName = "load-worker"

func init() { reexec.Register(workerName, workerMain) }

// job is a worker's task, its only argument (JSON).
type job struct {
	Sink        bool          `json:"sink,omitempty"`
	UDP         bool          `json:"udp,omitempty"`
	From        string        `json:"from,omitempty"`
	Policy      string        `json:"policy,omitempty"`
	To          []string      `json:"to,omitempty"`
	Conns       int           `json:"conns,omitempty"`
	First       int           `json:"first,omitempty"` // index of its first connection, for round-robin
	Hold        time.Duration `json:"hold"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	Concurrency int           `json:"concurrency,omitempty"`
	StopAfter   int           `json:"stop_after,omitempty"`
}

// msg is one line a worker reports.
type msg struct {
	Type        string         `json:"type"` // "progress" or "result"
	Established int            `json:"established"`
	Failed      int            `json:"failed"`
	Errors      map[string]int `json:"errors,omitempty"`
	LatencyUS   []int64        `json:"latency_us,omitempty"`
	Ports       []uint16       `json:"ports,omitempty"`
	ElapsedUS   int64          `json:"elapsed_us,omitempty"`
	CPUUS       int64          `json:"cpu_us,omitempty"`     // the worker's CPU time (user+system) while opening
	Stopped     []string       `json:"stopped,omitempty"`    // destinations given up after repeated errors
	FileLimit   uint64         `json:"file_limit,omitempty"` // RLIMIT_NOFILE, when the worker ran out of descriptors
	AtLimit     int            `json:"at_limit,omitempty"`   // connections it held then
}

// result is a msg and the worker that sent it.
type result struct {
	worker int
	msg
}

const fdSinkListener = 3

// workerMain runs one worker; args is its job. It returns the exit code.
func workerMain(args []string) int {
	var j job
	if len(args) != 1 || json.Unmarshal([]byte(args[0]), &j) != nil {
		fmt.Fprintf(os.Stderr, "tuple %s: want one JSON job argument, got %q\n", workerName, args)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The parent writes "hold" once every worker has reported, and
	// closes our stdin (or dies) to stop us.
	release := make(chan struct{})
	go func() {
		var once sync.Once
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "hold" {
				once.Do(func() { close(release) })
			}
		}
		cancel()
	}()
	out := &msgWriter{enc: json.NewEncoder(os.Stdout)}
	var err error
	if j.Sink {
		err = runSinkWorker(ctx, j, out)
	} else {
		err = runDialWorker(ctx, j, out, release)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tuple %s: %v\n", workerName, err)
		return 1
	}
	return 0
}

// msgWriter serialises report lines from several goroutines.
type msgWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// send writes m; a parent that stopped reading has gone, and the worker
// ends with its stdin.
func (w *msgWriter) send(m msg) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.enc.Encode(m)
}

// every calls fn every interval until the returned stop is called.
func every(interval time.Duration, fn func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// hold waits for d or ctx.
func hold(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// destState tracks one destination's run of identical failures, so a worker
// stops dialing a destination whose policy is exhausted instead of spinning.
type destState struct {
	lastErr string
	repeats int
	stopped bool
}

// dialState is what a dial worker's goroutines share.
type dialState struct {
	mu        sync.Mutex
	conns     []net.Conn
	lat       []int64
	ports     map[uint16]bool
	errs      map[string]int
	dests     []destState
	failed    int
	fileLimit uint64 // set when a socket could not be made for lack of descriptors
	atLimit   int    // connections held then
}

// record counts one dial's outcome.
func (s *dialState) record(ctx context.Context, j job, di int, c net.Conn, took time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.conns = append(s.conns, c)
		s.lat = append(s.lat, took.Microseconds())
		s.ports[sockaddr.OfNet(c.LocalAddr()).Port()] = true
		s.dests[di].repeats = 0
		return
	}
	if ctx.Err() != nil {
		return // interrupted, not failed
	}
	name := errName(err)
	s.errs[name]++
	s.failed++
	if errors.Is(err, syscall.EMFILE) && s.fileLimit == 0 {
		s.fileLimit, s.atLimit = limitOrOne(), len(s.conns)
	}
	ds := &s.dests[di]
	if ds.lastErr == name {
		ds.repeats++
	} else {
		ds.lastErr, ds.repeats = name, 1
	}
	ds.stopped = ds.stopped || ds.repeats >= j.StopAfter
}

func runDialWorker(ctx context.Context, j job, out *msgWriter, release <-chan struct{}) error {
	policy, err := dial.ParsePolicy(j.Policy)
	if err != nil {
		return err
	}
	d := &dial.Dialer{Policy: policy, Timeout: j.Timeout, KeepAlive: -1, Control: lingerZero}
	if j.From != "" {
		if d.Source, err = netip.ParseAddr(j.From); err != nil {
			return fmt.Errorf("source address: %w", err)
		}
	}
	s := &dialState{conns: make([]net.Conn, 0, j.Conns), lat: make([]int64, 0, j.Conns),
		ports: map[uint16]bool{}, errs: map[string]int{}, dests: make([]destState, len(j.To))}
	network := "tcp"
	if j.UDP {
		network = "udp"
	}
	var next atomic.Int64
	defer func() { closeAll(s.conns) }()
	start, cpuStart := time.Now(), cpuTime()
	stopProgress := every(250*time.Millisecond, func() {
		s.mu.Lock()
		m := msg{Type: "progress", Established: len(s.conns), Failed: s.failed}
		s.mu.Unlock()
		out.send(m)
	})
	var wg sync.WaitGroup
	for range max(1, j.Concurrency) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= j.Conns {
					return
				}
				di := (j.First + i) % len(j.To)
				s.mu.Lock()
				skip, full := s.dests[di].stopped, s.fileLimit > 0
				s.mu.Unlock()
				if full {
					return // every later socket would fail the same way
				}
				if skip {
					continue
				}
				t0 := time.Now()
				c, err := d.DialContext(ctx, network, j.To[di])
				s.record(ctx, j, di, c, time.Since(t0), err)
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpuStart
	stopProgress()
	res := msg{Type: "result", Established: len(s.conns), Failed: s.failed, Errors: s.errs,
		LatencyUS: s.lat, ElapsedUS: elapsed.Microseconds(), CPUUS: cpu.Microseconds(), FileLimit: s.fileLimit, AtLimit: s.atLimit}
	for p := range s.ports {
		res.Ports = append(res.Ports, p)
	}
	for i, ds := range s.dests {
		if ds.stopped {
			res.Stopped = append(res.Stopped, j.To[i])
		}
	}
	out.send(res)
	// Hold only once every worker has opened its share, so the report's
	// count is of connections open at once.
	select {
	case <-release:
		hold(ctx, j.Hold)
	case <-ctx.Done():
	}
	return nil
}

// closeAll closes conns with a reset (SO_LINGER 0) rather than a FIN, so a
// finished load leaves no TIME_WAIT sockets holding four-tuples behind.
func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // best effort: Close still closes
		}
		c.Close()
	}
}

// errName names a dial or accept error by its errno ("EADDRNOTAVAIL"),
// "timeout" for a dial timeout, "other" otherwise.
func errName(err error) string {
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		return rules.ErrnoName(errno)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "other"
}

func runSinkWorker(ctx context.Context, j job, out *msgWriter) error {
	f := os.NewFile(fdSinkListener, "listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("listener from the parent: %w", err)
	}
	sk := &sink{errs: map[string]int{}}
	var acceptWG sync.WaitGroup
	acceptWG.Add(1)
	go func() {
		defer acceptWG.Done()
		sk.accept(ln)
	}()
	stopProgress := every(250*time.Millisecond, func() { sk.report(out, "progress") })
	stopSweep := every(2*time.Second, sk.sweep)
	hold(ctx, j.Hold)
	ln.Close()
	acceptWG.Wait()
	stopSweep()
	stopProgress()
	sk.report(out, "result")
	closeAll(sk.conns)
	return nil
}

// sink is what a sink worker holds: the connections it accepted and the
// accept errors it met, shared by its accept loop, its progress reports
// and its sweep.
type sink struct {
	mu        sync.Mutex
	conns     []net.Conn
	accepted  int
	errs      map[string]int
	fileLimit uint64 // RLIMIT_NOFILE when EMFILE was first met (0: never)
	atLimit   int    // the connections held then
}

// accept accepts connections until ln is closed.
func (sk *sink) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err == nil {
			// From now on any close, the kernel's at exit
			// included, is a reset: no TIME_WAIT on either side.
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // best effort: closeAll sets it again
			}
		}
		sk.mu.Lock()
		if err != nil {
			// EMFILE and friends: the connection waits in the
			// queue; back off rather than spin.
			sk.errs[errName(err)]++
			if errors.Is(err, syscall.EMFILE) && sk.fileLimit == 0 {
				sk.fileLimit, sk.atLimit = limitOrOne(), len(sk.conns)
			}
		} else {
			sk.conns = append(sk.conns, c)
			sk.accepted++
		}
		sk.mu.Unlock()
		if err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// report sends the counts so far as a message of type typ.
func (sk *sink) report(out *msgWriter, typ string) {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	out.send(msg{Type: typ, Established: sk.accepted, Errors: sk.errs, FileLimit: sk.fileLimit, AtLimit: sk.atLimit})
}

// sweep closes what the clients closed, so a sink serving many runs does
// not pile up dead descriptors towards its limit.
func (sk *sink) sweep() {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	open := sk.conns[:0]
	for _, c := range sk.conns {
		if peerGone(c) {
			c.Close()
		} else {
			open = append(open, c)
		}
	}
	clear(sk.conns[len(open):])
	sk.conns = open
}

// limitOrOne is RLIMIT_NOFILE, or 1 when it cannot be read: a non-zero
// mark that the limit was reached.
func limitOrOne() uint64 {
	lim, _ := fileLimit()
	return max(lim, 1)
}
