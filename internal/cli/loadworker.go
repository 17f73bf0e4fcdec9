package cli

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

	"github.com/spf13/cobra"

	"github.com/tuple-net/tuple/dial"
	"github.com/tuple-net/tuple/rules"
)

// tuple load spreads its sockets over worker processes, because one process
// may hold at most 20,000 descriptors here. The parent re-executes its own
// binary as the hidden command "load-worker" with a workerSpec (JSON) as the
// only argument; the worker reports on stdout as JSON lines (workerMsg) and
// ends when its hold time is over, when stdin closes (the parent is gone) or
// on SIGINT/SIGTERM. The listening socket of a sink worker is descriptor 3.

// workerSpec is a worker's job.
type workerSpec struct {
	Sink        bool          `json:"sink,omitempty"`
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

// workerMsg is one line a worker reports.
type workerMsg struct {
	Type        string         `json:"type"` // "progress" or "result"
	Established int            `json:"established"`
	Failed      int            `json:"failed"`
	Errors      map[string]int `json:"errors,omitempty"`
	LatencyUS   []int64        `json:"latency_us,omitempty"`
	Ports       []uint16       `json:"ports,omitempty"`
	ElapsedUS   int64          `json:"elapsed_us,omitempty"`
	CPUUS       int64          `json:"cpu_us,omitempty"`  // the worker's CPU time (user+system) while opening
	Stopped     []string       `json:"stopped,omitempty"` // destinations given up after repeated errors
}

const fdSinkListener = 3

func newLoadWorkerCmd(s Streams) *cobra.Command {
	return &cobra.Command{
		Use:    "load-worker SPEC",
		Short:  "Internal: one worker process of tuple load",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			var spec workerSpec
			if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
				return usageError("load-worker: bad spec: %v", err)
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
				sc := bufio.NewScanner(s.In)
				for sc.Scan() {
					if sc.Text() == "hold" {
						once.Do(func() { close(release) })
					}
				}
				cancel()
			}()
			out := &msgWriter{enc: json.NewEncoder(s.Out)}
			if spec.Sink {
				return runSinkWorker(ctx, spec, out)
			}
			return runDialWorker(ctx, spec, out, release)
		}),
	}
}

// msgWriter serialises report lines from several goroutines.
type msgWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *msgWriter) send(m workerMsg) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.enc.Encode(m)
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

func runDialWorker(ctx context.Context, spec workerSpec, out *msgWriter, release <-chan struct{}) error {
	policy, err := dial.ParsePolicy(spec.Policy)
	if err != nil {
		return usageError("%v", err)
	}
	d := &dial.Dialer{Policy: policy, Timeout: spec.Timeout, KeepAlive: -1}
	if spec.From != "" {
		if d.Source, err = netip.ParseAddr(spec.From); err != nil {
			return usageError("load-worker: --from: %v", err)
		}
	}
	var (
		mu     sync.Mutex
		conns  = make([]net.Conn, 0, spec.Conns)
		lat    = make([]int64, 0, spec.Conns)
		ports  = map[uint16]bool{}
		errs   = map[string]int{}
		dests  = make([]destState, len(spec.To))
		failed int
		next   atomic.Int64
	)
	defer func() { closeAll(conns) }()
	start, cpuStart := time.Now(), cpuTime()
	stopProgress := every(250*time.Millisecond, func() {
		mu.Lock()
		m := workerMsg{Type: "progress", Established: len(conns), Failed: failed}
		mu.Unlock()
		out.send(m)
	})
	var wg sync.WaitGroup
	for range max(1, spec.Concurrency) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= spec.Conns {
					return
				}
				di := (spec.First + i) % len(spec.To)
				mu.Lock()
				skip := dests[di].stopped
				mu.Unlock()
				if skip {
					continue
				}
				t0 := time.Now()
				c, err := d.DialContext(ctx, "tcp", spec.To[di])
				took := time.Since(t0)
				mu.Lock()
				if err != nil {
					if ctx.Err() == nil {
						name := errName(err)
						errs[name]++
						failed++
						ds := &dests[di]
						if ds.lastErr == name {
							ds.repeats++
						} else {
							ds.lastErr, ds.repeats = name, 1
						}
						ds.stopped = ds.stopped || ds.repeats >= spec.StopAfter
					}
				} else {
					conns = append(conns, c)
					lat = append(lat, took.Microseconds())
					ports[uint16(c.LocalAddr().(*net.TCPAddr).Port)] = true
					dests[di].repeats = 0
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpuStart
	stopProgress()
	res := workerMsg{Type: "result", Established: len(conns), Failed: failed, Errors: errs,
		LatencyUS: lat, ElapsedUS: elapsed.Microseconds(), CPUUS: cpu.Microseconds()}
	for p := range ports {
		res.Ports = append(res.Ports, p)
	}
	for i, ds := range dests {
		if ds.stopped {
			res.Stopped = append(res.Stopped, spec.To[i])
		}
	}
	out.send(res)
	// Hold only once every worker has opened its share, so the report's
	// count is of connections open at once.
	select {
	case <-release:
		hold(ctx, spec.Hold)
	case <-ctx.Done():
	}
	return nil
}

// closeAll closes conns with a reset (SO_LINGER 0) rather than a FIN, so a
// finished load leaves no TIME_WAIT sockets holding four-tuples behind.
func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
}

// errName names a dial error by its errno ("EADDRNOTAVAIL"), "timeout" for
// a dial timeout, "other" otherwise.
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

func runSinkWorker(ctx context.Context, spec workerSpec, out *msgWriter) error {
	f := os.NewFile(fdSinkListener, "listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("load-worker: listener from the parent: %w", err)
	}
	var (
		mu       sync.Mutex
		conns    []net.Conn
		accepted int
		errs     = map[string]int{}
		acceptWG sync.WaitGroup
	)
	acceptWG.Add(1)
	go func() {
		defer acceptWG.Done()
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			mu.Lock()
			if err != nil {
				// EMFILE and friends: the connection waits in the
				// queue; back off rather than spin.
				errs[errName(err)]++
			} else {
				conns = append(conns, c)
				accepted++
			}
			mu.Unlock()
			if err != nil {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	report := func(typ string) {
		mu.Lock()
		m := workerMsg{Type: typ, Established: accepted, Errors: errs}
		out.send(m)
		mu.Unlock()
	}
	stopProgress := every(250*time.Millisecond, func() { report("progress") })
	// Close what the clients closed, so a sink serving many runs does not
	// pile up dead descriptors towards its limit.
	stopSweep := every(2*time.Second, func() {
		mu.Lock()
		defer mu.Unlock()
		open := conns[:0]
		for _, c := range conns {
			if peerGone(c) {
				c.Close()
			} else {
				open = append(open, c)
			}
		}
		clear(conns[len(open):])
		conns = open
	})
	hold(ctx, spec.Hold)
	ln.Close()
	acceptWG.Wait()
	stopSweep()
	stopProgress()
	report("result")
	closeAll(conns)
	return nil
}
