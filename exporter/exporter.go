package exporter

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	Facts    *hostmodel.Facts // the kernel's own socket records, nil when unreadable
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
// kernelFacts it also reads the kernel's own socket records
// (ports.StartFacts, beside the dump), which make the budget exact where
// they can be read; without them free ports are reported as ranges.
// docs/benchmarks.md has the cost of both.
func LiveSource(procRoot string, owners, kernelFacts bool) Source {
	return SourceFunc(func(ctx context.Context) Input {
		var in Input
		// The kernel's records are read beside the dump.
		facts := func() *hostmodel.Facts { return nil }
		if kernelFacts {
			facts = ports.StartFacts()
		}
		in.Host, _, in.HostErr = hostmodel.ReadHost(procRoot)
		in.Table, in.TableErr = socktab.Snapshot(ctx, socktab.Query{Owners: owners, Options: owners, ProcRoot: procRoot})
		in.Facts = facts()
		return in
	})
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
}

// snapshot is one scrape's view, shared by every collector of the scrape.
type snapshot struct {
	Input
	entries []ports.Entry
	report  ports.Report
	top     int
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
		"Time taken to read the socket table and sysctls in this scrape.", nil, nil)
)

// Exporter is a prometheus.Collector for tuple's metrics.
type Exporter struct {
	src        Source
	opt        Options
	collectors []namedCollector

	mu      sync.Mutex // one snapshot at a time
	scrapes prometheus.Counter
	errors  *prometheus.CounterVec
}

// New returns an Exporter reading from src.
func New(src Source, opt Options) *Exporter {
	if opt.Top <= 0 {
		opt.Top = 10
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Second
	}
	e := &Exporter{
		src: src, opt: opt, collectors: registered(),
		scrapes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "scrapes_total",
			Help: "Scrapes served since the exporter started."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "scrape_collector_errors_total",
			Help: "Failed collector runs since the exporter started."}, []string{"collector"}),
	}
	// Start every collector's error counter at 0 so rate() sees the
	// first failure.
	for _, c := range e.collectors {
		e.errors.WithLabelValues(c.name)
	}
	return e
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	ch <- durationDesc
	ch <- successDesc
	ch <- snapshotDesc
	e.scrapes.Describe(ch)
	e.errors.Describe(ch)
	for _, c := range e.collectors {
		c.c.describe(ch)
	}
}

// Collect implements prometheus.Collector: one snapshot, then every
// collector over it. A panicking or failing collector is reported through
// its success metric and does not stop the others.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	s := e.snapshot()
	took := time.Since(start)
	ch <- prometheus.MustNewConstMetric(snapshotDesc, prometheus.GaugeValue, took.Seconds())
	for _, c := range e.collectors {
		t0 := time.Now()
		err := safeUpdate(c.c, s, ch)
		d := time.Since(t0)
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
	e.errors.Collect(ch)
}

func (e *Exporter) snapshot() *snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), e.opt.Timeout)
	defer cancel()
	s := &snapshot{Input: e.src.Read(ctx), top: e.opt.Top}
	if s.Table == nil && s.TableErr == nil {
		s.TableErr = fmt.Errorf("source returned no table")
	}
	if s.TableErr == nil {
		tab := ports.FromTable(s.Host, s.Table, s.Facts)
		s.entries = tab.Entries
		if s.HostErr == nil {
			s.report = ports.Budget(s.entries, s.Host, ports.Options{HogShare: e.opt.HogShare, Buckets: tab.Buckets})
		}
	}
	return s
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
