package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sort"
	"syscall"
	"time"

	"github.com/tuple-net/tuple/dial"
)

// MaxWorkers bounds the processes one Run starts.
const MaxWorkers = 256

// Reserve is the descriptors a worker keeps for itself (standard streams,
// the Go runtime's poller, a sink's listener) below RLIMIT_NOFILE.
const Reserve = 32

// Spec is one client run.
type Spec struct {
	// From is the source address; the zero Addr leaves it to the kernel.
	From netip.Addr
	// To are the destinations, dialed round-robin.
	To []netip.AddrPort
	// Conns is how many connections to open.
	Conns int
	// UDP connects datagram sockets instead: connect() picks the source
	// port and holds the four-tuple, and sends nothing, so no sink is
	// needed. Established then counts connected sockets.
	UDP bool
	// Policy picks the local port; the zero Policy is dial.Shared with
	// From and dial.Kernel without.
	Policy dial.Policy
	// Hold is how long the connections stay open once all are opened.
	Hold time.Duration
	// PerProc is the most connections per worker; 0 means PerProcMax().
	PerProc int
	// Timeout bounds each connect; 0 means 5 s.
	Timeout time.Duration
	// Concurrency is the connects in flight per worker; 0 means 32.
	Concurrency int
	// StopAfter gives a destination up after this many identical errors
	// in a row (an exhausted policy); 0 means 20.
	StopAfter int
	// Stderr receives the workers' own error messages; nil means os.Stderr.
	Stderr io.Writer
	// Progress, when set, is called about every 250 ms while opening with
	// the connections established so far.
	Progress func(established int)
	// Opened, when set, is called once every worker has opened its share
	// (or the run was interrupted), before the hold, with the report. An
	// error it returns ends the run at once and is Run's error.
	Opened func(Report) error
}

// Report is the result of a run.
type Report struct {
	Proto       string         `json:"proto"` // "tcp" or "udp"
	Policy      string         `json:"policy"`
	From        string         `json:"from,omitempty"`
	To          []string       `json:"to"`
	Requested   int            `json:"requested"`
	Established int            `json:"established"`
	Errors      map[string]int `json:"errors"` // connect errors by errno name ("EADDRNOTAVAIL"), "timeout" or "other"
	RatePerS    float64        `json:"rate_per_s"`
	P50ms       float64        `json:"p50_ms"`
	P99ms       float64        `json:"p99_ms"`
	LocalPorts  int            `json:"local_ports"`
	Workers     int            `json:"workers"`
	ElapsedS    float64        `json:"elapsed_s"`
	CPUUSPer    float64        `json:"cpu_us_per_conn"` // workers' CPU time (mostly the kernel's connect) per attempt
	GivenUp     []string       `json:"given_up,omitempty"`
	Interrupted bool           `json:"interrupted,omitempty"`
}

// FileLimitError says a worker ran out of descriptors (EMFILE): it stopped
// there instead of counting every later connect as failed.
type FileLimitError struct {
	Worker int    // the worker's index
	Limit  uint64 // its RLIMIT_NOFILE
	Held   int    // connections it held when it reached the limit
}

func (e *FileLimitError) Error() string {
	return fmt.Sprintf("worker process %d reached its file limit (RLIMIT_NOFILE %d) holding %d connections: too many open files (EMFILE)", e.Worker, e.Limit, e.Held)
}

// Unwrap makes errors.Is(err, syscall.EMFILE) hold.
func (e *FileLimitError) Unwrap() error { return errEMFILE }

// PerProcMax is the most connections one worker can hold: RLIMIT_NOFILE
// (read now: a worker, like this process, runs with the soft limit Go
// raises to the hard one) less Reserve.
func PerProcMax() (int, error) {
	lim, err := fileLimit()
	if err != nil {
		return 0, err
	}
	if lim <= Reserve {
		return 0, fmt.Errorf("load: RLIMIT_NOFILE %d leaves no descriptors for connections (a worker keeps %d for itself)", lim, Reserve)
	}
	return int(min(lim-Reserve, 1<<30)), nil
}

// withDefaults checks s and fills its defaults.
func (s Spec) withDefaults() (Spec, error) {
	if s.Policy.Kind() == dial.KindDefault {
		s.Policy = dial.Kernel
		if s.From.IsValid() {
			s.Policy = dial.Shared
		}
	}
	if s.Timeout == 0 {
		s.Timeout = 5 * time.Second
	}
	if s.Concurrency == 0 {
		s.Concurrency = 32
	}
	if s.StopAfter == 0 {
		s.StopAfter = 20
	}
	if s.Stderr == nil {
		s.Stderr = os.Stderr
	}
	if s.PerProc == 0 {
		n, err := PerProcMax()
		if err != nil {
			return s, err
		}
		s.PerProc = n
	} else if n, err := PerProcMax(); err == nil && s.PerProc > n {
		return s, fmt.Errorf("load: %d connections per worker is more than a worker can hold: RLIMIT_NOFILE less %d reserved descriptors is %d", s.PerProc, Reserve, n)
	}
	switch {
	case len(s.To) == 0:
		return s, errors.New("load: no destination")
	case s.Conns < 1:
		return s, fmt.Errorf("load: want at least 1 connection, got %d", s.Conns)
	case s.Hold < 0 || s.Timeout < 0 || s.Concurrency < 0 || s.StopAfter < 0 || s.PerProc < 0:
		return s, errors.New("load: negative hold, timeout, concurrency, stop-after or per-worker count")
	case s.Conns > MaxWorkers*s.PerProc:
		return s, fmt.Errorf("load: %d connections need more than %d workers of %d", s.Conns, MaxWorkers, s.PerProc)
	}
	if err := s.Policy.Validate(); err != nil {
		return s, fmt.Errorf("load: %w", err)
	}
	if s.Policy.Kind() == dial.KindKernel && s.From.IsValid() {
		return s, fmt.Errorf("load: policy kernel does not bind, so it cannot use source %s", s.From)
	}
	for _, t := range s.To {
		if s.From.IsValid() && s.From.Is4() != t.Addr().Is4() {
			return s, fmt.Errorf("load: source %s and destination %s are of different address families", s.From, t)
		}
	}
	return s, nil
}

// jobs splits the run over workers of at most PerProc connections each.
func (s Spec) jobs() []job {
	n := (s.Conns + s.PerProc - 1) / s.PerProc
	var jobs []job
	first := 0
	for i := range n {
		conns := s.Conns / n
		if i < s.Conns%n {
			conns++
		}
		j := job{UDP: s.UDP, Policy: s.Policy.String(), Conns: conns, First: first, Hold: s.Hold,
			Timeout: s.Timeout, Concurrency: s.Concurrency, StopAfter: s.StopAfter}
		if s.From.IsValid() {
			j.From = s.From.String()
		}
		for _, t := range s.To {
			j.To = append(j.To, t.String())
		}
		jobs = append(jobs, j)
		first += conns
	}
	return jobs
}

// Run opens spec.Conns connections over worker processes, calls
// spec.Opened with the report, holds them for spec.Hold (or until ctx
// ends) and returns the report once every worker has exited. A run ctx
// interrupts returns a partial report (Interrupted) and no error; workers
// that ran out of descriptors come back as *FileLimitError beside a full
// report.
func Run(ctx context.Context, spec Spec) (Report, error) {
	spec, err := spec.withDefaults()
	if err != nil {
		return Report{}, err
	}
	jobs := spec.jobs()
	g, err := startWorkers(jobs, nil, spec.Stderr)
	if err != nil {
		return Report{}, err
	}
	defer g.stop()
	results := g.collect(ctx, spec.Progress)
	r := summarize(results)
	r.Policy, r.Requested, r.Workers = spec.Policy.String(), spec.Conns, len(jobs)
	r.Proto = "tcp"
	if spec.UDP {
		r.Proto = "udp"
	}
	r.From, r.To = jobs[0].From, jobs[0].To
	r.Interrupted = ctx.Err() != nil || len(results) < len(jobs)
	if spec.Opened != nil {
		if err := spec.Opened(r); err != nil {
			return r, err
		}
	}
	// The workers hold their connections for spec.Hold, or until ctx ends.
	g.release()
	g.wait(ctx)
	return r, fileLimitErrors(results)
}

// fileLimitErrors joins the workers' *FileLimitError, nil when none.
func fileLimitErrors(results []result) error {
	var errs []error
	for _, m := range results {
		if m.FileLimit > 0 {
			errs = append(errs, &FileLimitError{Worker: m.worker, Limit: m.FileLimit, Held: m.AtLimit})
		}
	}
	return errors.Join(errs...)
}

// summarize merges the workers' results.
func summarize(results []result) Report {
	r := Report{Errors: map[string]int{}}
	var lat []int64
	ports := map[uint16]bool{}
	var slowest, cpu int64
	attempts := 0
	given := map[string]bool{}
	for _, m := range results {
		r.Established += m.Established
		attempts += m.Established + m.Failed
		cpu += m.CPUUS
		for k, v := range m.Errors {
			r.Errors[k] += v
		}
		lat = append(lat, m.LatencyUS...)
		for _, p := range m.Ports {
			ports[p] = true
		}
		slowest = max(slowest, m.ElapsedUS)
		for _, d := range m.Stopped {
			given[d] = true
		}
	}
	slices.Sort(lat)
	r.P50ms = percentile(lat, 50) / 1000
	r.P99ms = percentile(lat, 99) / 1000
	r.LocalPorts = len(ports)
	r.ElapsedS = float64(slowest) / 1e6
	if slowest > 0 {
		r.RatePerS = float64(r.Established) / r.ElapsedS
	}
	if attempts > 0 {
		r.CPUUSPer = float64(cpu) / float64(attempts)
	}
	for d := range given {
		r.GivenUp = append(r.GivenUp, d)
	}
	sort.Strings(r.GivenUp)
	return r
}

// percentile is the nearest-rank percentile of sorted values, 0 when empty.
func percentile(sorted []int64, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return float64(sorted[max(rank, 1)-1])
}

var errEMFILE error = syscall.EMFILE
