package exporter

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/ports"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

const namespace = "tuple"

// Input is what a Source read for one scrape. Either part may have failed;
// collectors that need a failed part report failure, the others run.
type Input struct {
	Table    *socktab.Table
	TableErr error
	Host     rules.Host
	HostErr  error
	// HostNotes lists the sysctls that could not be read and were taken
	// at the kernel's default (hostmodel.Sysctls): exported and logged,
	// never silent.
	HostNotes []string
	Facts     *hostmodel.Facts // the kernel's own socket records, nil when unreadable
	// FactsErr is why Facts is nil when they were asked for: the budget
	// falls back to ranges, and the exporter logs the reason.
	FactsErr error
	// Budget, when not nil, is the TCP sockets read from the kernel's own
	// records (ports.Reader), which replace Table's TCP rows: Table then
	// holds the UDP sockets only. It is valid until the source's next
	// Read.
	Budget *ports.Table
}

// Source reads the namespace's state once per scrape.
type Source interface {
	Read(ctx context.Context) Input
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context) Input

// Read calls f.
func (f SourceFunc) Read(ctx context.Context) Input { return f(ctx) }

// LiveSource reads the socket table of the calling process's network
// namespace and the sysctls under procRoot. With owners it also finds the
// processes holding each socket and their live options (slower: it reads
// every process's descriptors and each owner's options), which tells
// connect-picked ports apart where IP_BIND_ADDRESS_NO_PORT is set. With
// kernelFacts it also reads the kernel's own socket records (the sockfacts
// BPF iterator, beside the dump), which make the budget exact where they
// can be read; without them free ports are reported as ranges.
// docs/benchmarks.md has the cost of both. The iterator's program stays
// loaded, and its buffers are reused, from one read to the next: Close
// the source to unload it. Read is not safe for concurrent use (the
// Exporter calls it from one scrape at a time).
func LiveSource(procRoot string, owners, kernelFacts bool) *Live {
	return &Live{procRoot: procRoot, owners: owners, kernelFacts: kernelFacts}
}

// Live is LiveSource's Source.
type Live struct {
	mu                  sync.Mutex // Close waits for a read in flight
	procRoot            string
	owners, kernelFacts bool
	budget              *ports.Reader // loaded at the first read that needs it
}

// Read reads one snapshot. With kernel facts the TCP sockets come from the
// kernel's records alone (ports.Reader: one walk of the kernel's tables,
// its buffers reused from scrape to scrape) and the socket table is dumped
// for UDP; where the records cannot be read the whole table is dumped and
// the budget gives ranges.
func (l *Live) Read(ctx context.Context) Input {
	l.mu.Lock()
	defer l.mu.Unlock()
	var in Input
	if l.kernelFacts && l.budget == nil {
		// Loaded again at every read until it loads (not root, no
		// BTF: the error says why, every time).
		l.budget, in.FactsErr = ports.NewReader()
	}
	if l.budget == nil {
		in.Host, in.HostNotes, in.HostErr = hostmodel.ReadHost(l.procRoot)
	} else {
		// The TCP read needs the sysctls only to decode the records,
		// and the UDP dump needs neither: ReadWith reads them once its
		// walks of the kernel's TCP tables (the scrape's longest work)
		// have started, and the UDP dump starts then too, all side by
		// side.
		var udp func() (*socktab.Table, error)
		tab, err := l.budget.ReadWith(ctx, func() (rules.Host, error) {
			udp = socktab.SnapshotAsync(ctx, socktab.Query{UDP: true, ProcRoot: l.procRoot})
			in.Host, in.HostNotes, in.HostErr = hostmodel.ReadHost(l.procRoot)
			return in.Host, in.HostErr
		}, l.procRoot, l.owners)
		if err == nil {
			in.Budget = tab
			in.Table, in.TableErr = udp()
			return in
		}
		_, _ = udp() // the whole table is dumped below instead
		if in.HostErr == nil {
			in.FactsErr = err
		}
	}
	in.Table, in.TableErr = socktab.Snapshot(ctx, socktab.Query{Owners: l.owners, Options: l.owners, ProcRoot: l.procRoot})
	return in
}

// Close unloads the iterator's program.
func (l *Live) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.budget.Close()
	l.budget = nil
	return err
}

// Options tune an Exporter.
type Options struct {
	// Top is how many destinations and uids get their own series; the rest
	// are summed under "other". 0 means 10.
	Top int
	// HogShare is passed to ports.Options (0 means 0.5).
	HogShare float64
	// Timeout bounds one snapshot; 0 means 10 s.
	Timeout time.Duration
	// MaxAge is how long a finished snapshot still serves new scrapes; 0
	// means 1 s, negative never reuses one. Requests pipelined on one
	// connection or sent in a burst then cost one snapshot, not one each.
	MaxAge time.Duration
	// Log receives collector failures and changes in how the host was
	// read, once per change and on recovery, not once per scrape; nil
	// means slog.Default().
	Log *slog.Logger
}

// snapshot is one scrape's view, shared by every collector of the scrape
// and by concurrent scrapes; read-only once made.
type snapshot struct {
	Input
	// counts are the table's sockets per protocol and state (the
	// sockets collector's), taken before the table is let go: a snapshot
	// keeps no per-socket data once made, so what it holds between
	// scrapes does not grow with the table.
	counts    []socketCount
	timeWait  int
	report    ports.Report
	top       int
	fallbacks []string // sysctls taken at the kernel default
	took      time.Duration
	done      time.Time
}

// errTable and errHost return why the part a collector needs is missing.
func (s *snapshot) needTable() error {
	if s.TableErr != nil {
		return fmt.Errorf("socket table: %w", s.TableErr)
	}
	return nil
}

func (s *snapshot) needBudget() error {
	if err := s.needTable(); err != nil {
		return err
	}
	if s.HostErr != nil {
		return fmt.Errorf("sysctls: %w", s.HostErr)
	}
	return nil
}

// collector is one concern's metrics over a snapshot.
type collector interface {
	describe(ch chan<- *prometheus.Desc)
	update(s *snapshot, ch chan<- prometheus.Metric) error
}

// namedCollector pairs a collector with the name its scrape metrics carry.
type namedCollector struct {
	name string
	c    collector
}

// registered is the one place collectors are registered.
func registered() []namedCollector {
	return []namedCollector{
		{"ephemeral", newEphemeralCollector()},
		{"sockets", newSocketsCollector()},
		{"holders", newHoldersCollector()},
	}
}

var (
	durationDesc = prometheus.NewDesc(namespace+"_scrape_collector_duration_seconds",
		"Time a collector took in this scrape, including the shared snapshot it works on (tuple_scrape_snapshot_duration_seconds).", []string{"collector"}, nil)
	successDesc = prometheus.NewDesc(namespace+"_scrape_collector_success",
		"1 when the collector succeeded in this scrape, 0 when it failed.", []string{"collector"}, nil)
	snapshotDesc = prometheus.NewDesc(namespace+"_scrape_snapshot_duration_seconds",
		"Time taken to read the socket table and sysctls for the snapshot this scrape used (shared by concurrent scrapes).", nil, nil)
	snapshotAgeDesc = prometheus.NewDesc(namespace+"_scrape_snapshot_age_seconds",
		"Age of the snapshot this scrape used when the scrape began using it: 0 for a fresh one, more when shared with a concurrent or recent scrape.", nil, nil)
	sysctlDefaultDesc = prometheus.NewDesc(namespace+"_sysctl_fallback",
		"1 for each sysctl that could not be read in this scrape and was taken at the kernel's default.", []string{"sysctl"}, nil)
	hostReadDesc = prometheus.NewDesc(namespace+"_sysctls_read",
		"1 when the port sysctls were read in this scrape, 0 when they could not be (the ephemeral and holders collectors then fail).", nil, nil)
)

// Exporter is a prometheus.Collector for tuple's metrics.
type Exporter struct {
	src        Source
	opt        Options
	collectors []namedCollector

	group          singleflight.Group // concurrent scrapes share one snapshot
	mu             sync.Mutex
	last           *snapshot // the latest finished snapshot, for MaxAge
	lastState      string    // the host read's state last logged
	lastTableNotes string    // the socket table's notes last logged
	scrapes        prometheus.Counter
	snapshots      prometheus.Counter
	errors         *prometheus.CounterVec

	logMu sync.Mutex            // guards logs: scrapes may run concurrently
	logs  map[string]*changeLog // per collector name, and factsLog
}

// factsLog names the kernel's socket records (ports.ReadFacts) in the logs:
// without them the budgets are ranges.
const factsLog = "kernel-facts"

// New returns an Exporter reading from src.
func New(src Source, opt Options) *Exporter {
	if opt.Top <= 0 {
		opt.Top = 10
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Second
	}
	if opt.MaxAge == 0 {
		opt.MaxAge = time.Second
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	e := &Exporter{
		src: src, opt: opt, collectors: registered(), logs: map[string]*changeLog{},
		scrapes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "scrapes_total",
			Help: "Scrapes served since the exporter started."}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "scrape_snapshots_total",
			Help: "Snapshots of the socket table and sysctls read since the exporter started; concurrent and closely following scrapes share one."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "scrape_collector_errors_total",
			Help: "Failed collector runs since the exporter started."}, []string{"collector"}),
	}
	// Start every collector's error counter at 0 so rate() sees the
	// first failure.
	for _, c := range e.collectors {
		e.errors.WithLabelValues(c.name)
		l := newChangeLog(opt.Log, c.name)
		e.logs[c.name] = &l
	}
	l := newChangeLog(opt.Log, factsLog)
	e.logs[factsLog] = &l
	return e
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	ch <- durationDesc
	ch <- successDesc
	ch <- snapshotDesc
	ch <- snapshotAgeDesc
	ch <- sysctlDefaultDesc
	ch <- hostReadDesc
	e.scrapes.Describe(ch)
	e.snapshots.Describe(ch)
	e.errors.Describe(ch)
	for _, c := range e.collectors {
		c.c.describe(ch)
	}
}

// Collect implements prometheus.Collector: one snapshot, then every
// collector over it. A panicking or failing collector is reported through
// its success metric and does not stop the others.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	s := e.snapshot()
	took := s.took
	ch <- prometheus.MustNewConstMetric(snapshotDesc, prometheus.GaugeValue, took.Seconds())
	e.report(factsLog, s.FactsErr)
	ch <- prometheus.MustNewConstMetric(snapshotAgeDesc, prometheus.GaugeValue, max(time.Since(s.done), 0).Seconds())
	read := 1.0
	if s.HostErr != nil {
		read = 0
	}
	ch <- prometheus.MustNewConstMetric(hostReadDesc, prometheus.GaugeValue, read)
	for _, name := range s.fallbacks {
		ch <- prometheus.MustNewConstMetric(sysctlDefaultDesc, prometheus.GaugeValue, 1, name)
	}
	for _, c := range e.collectors {
		t0 := time.Now()
		err := safeUpdate(c.c, s, ch)
		d := time.Since(t0)
		e.report(c.name, err)
		ok := 1.0
		if err != nil {
			ok = 0
			e.errors.WithLabelValues(c.name).Inc()
		}
		ch <- prometheus.MustNewConstMetric(durationDesc, prometheus.GaugeValue, (took + d).Seconds(), c.name)
		ch <- prometheus.MustNewConstMetric(successDesc, prometheus.GaugeValue, ok, c.name)
	}
	e.scrapes.Inc()
	e.scrapes.Collect(ch)
	e.snapshots.Collect(ch)
	e.errors.Collect(ch)
}

// report logs part's failure once per change of error (changeLog).
func (e *Exporter) report(part string, err error) {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	if l := e.logs[part]; l != nil {
		l.report(err)
	}
}

// snapshot returns a snapshot for one scrape: the latest one if it is
// younger than MaxAge, else a new one read once for every scrape waiting
// for it (singleflight). Snapshots are never changed once made, so
// collectors of several scrapes read one at the same time.
func (e *Exporter) snapshot() *snapshot {
	e.mu.Lock()
	last := e.last
	e.mu.Unlock()
	if last != nil && e.opt.MaxAge > 0 && time.Since(last.done) < e.opt.MaxAge {
		return last
	}
	v, _, _ := e.group.Do("snapshot", func() (any, error) {
		s := e.read()
		e.mu.Lock()
		e.last = s
		e.mu.Unlock()
		return s, nil
	})
	return v.(*snapshot)
}

// read makes a new snapshot and logs a change in how the host was read.
func (e *Exporter) read() *snapshot {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), e.opt.Timeout)
	defer cancel()
	e.snapshots.Inc()
	s := &snapshot{Input: e.src.Read(ctx), top: e.opt.Top}
	defer func() {
		s.done = time.Now()
		s.took = s.done.Sub(start)
	}()
	for _, n := range s.HostNotes {
		name, _, _ := strings.Cut(n, " ")
		s.fallbacks = append(s.fallbacks, name)
	}
	e.logHostState(s)
	if s.Table != nil {
		e.logTableNotes(s.Table.Notes)
	}
	if s.Table == nil && s.TableErr == nil {
		s.TableErr = fmt.Errorf("source returned no table")
	}
	if s.TableErr == nil {
		s.counts, s.timeWait = countSockets(s.Table.Sockets, s.Budget)
		tab := s.Budget
		if tab == nil {
			tab = ports.FromTable(s.Host, s.Table, s.Facts)
		}
		// The table and the records are converted: let them go before
		// the budget builds its model.
		s.Table, s.Facts, tab.Sockets = nil, nil, nil
		if s.HostErr == nil {
			s.report = tab.Budget(s.Host, ports.Options{HogShare: e.opt.HogShare})
		}
	}
	// The snapshot keeps no per-socket data: only counts and the report.
	s.Table, s.Facts, s.Budget = nil, nil, nil
	return s
}

// logHostState logs when the sysctls become unreadable or a sysctl falls
// back to its default, and when that ends; not at every scrape.
func (e *Exporter) logHostState(s *snapshot) {
	state := ""
	switch {
	case s.HostErr != nil:
		state = fmt.Sprintf("sysctls unreadable, ephemeral-port metrics not exported (tuple_sysctls_read 0): %v", s.HostErr)
	case len(s.HostNotes) > 0:
		state = "sysctls taken at the kernel default (tuple_sysctl_fallback): " + strings.Join(s.HostNotes, "; ")
	}
	e.logChange(&e.lastState, state, "sysctls read again")
}

// logTableNotes logs what the socket table says it lacks (bound-only
// sockets a kernel before 6.8 cannot list and that could not be looked
// for, owners not readable, ...) when that changes, not at every scrape:
// without it the series would read as complete.
func (e *Exporter) logTableNotes(notes []string) {
	state := ""
	if len(notes) > 0 {
		state = "socket table: " + strings.Join(notes, "; ")
	}
	e.logChange(&e.lastTableNotes, state, "socket table read whole again")
}

// logChange logs state as a warning when it differs from *last, and ok
// when it has just become "", then remembers it.
func (e *Exporter) logChange(last *string, state, ok string) {
	e.mu.Lock()
	changed := state != *last
	*last = state
	e.mu.Unlock()
	switch {
	case !changed:
	case state == "":
		e.opt.Log.Info(ok)
	default:
		e.opt.Log.Warn(state)
	}
}

// safeUpdate runs one collector, turning a panic into an error so one bad
// collector cannot take the exporter down.
func safeUpdate(c collector, s *snapshot, ch chan<- prometheus.Metric) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("collector panicked: %v", r)
		}
	}()
	return c.update(s, ch)
}
