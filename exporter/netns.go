package exporter

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/netns"
	"github.com/tuple-net/tuple/ports"
	"github.com/tuple-net/tuple/socktab"
)

// NamespaceSummary is one namespace's ports in a scrape.
type NamespaceSummary struct {
	NS        netns.Namespace
	Sockets   int // TCP sockets
	Pool      int // ephemeral ports an autobind may take
	InUse     int // of them, held by some socket
	FreeMin   int // fewest ports a connect() to any one destination can still take (lower bound)
	TimeWait  int
	BoundOnly int
	Notes     []string // what the namespace's socket table lacks (socktab.Table.Notes)
}

// ReadNamespace summarises the namespace at ns.Path from a thread inside
// it: socket table, sysctls and the ports budget are all per namespace.
// search, shared by the namespaces of one scrape, makes one pass over
// every process's descriptors serve all their tables where the kernel
// cannot list bound-only sockets (before 6.8); nil makes a pass of its own.
func ReadNamespace(ctx context.Context, ns netns.Namespace, procRoot string, search *socktab.BoundOnlySearch) (NamespaceSummary, error) {
	sum := NamespaceSummary{NS: ns}
	err := netns.Do(ns.Path, func() error {
		host, _, err := hostmodel.ReadHost(procRoot)
		if err != nil {
			return fmt.Errorf("sysctls: %w", err)
		}
		t, err := socktab.Snapshot(ctx, socktab.Query{TCP: true, ProcRoot: procRoot, BoundOnly: search})
		if err != nil {
			return fmt.Errorf("socket table: %w", err)
		}
		tab := ports.FromTable(host, t, nil)
		rep := ports.Budget(tab.Entries, host, ports.Options{Buckets: tab.Buckets})
		sum.Sockets, sum.Pool, sum.InUse = len(t.Sockets), rep.Pool, rep.InUse
		sum.Notes = t.Notes
		sum.TimeWait, sum.BoundOnly = rep.TimeWait, rep.BoundOnly
		sum.FreeMin = rep.ConnectFreeMin
		for _, d := range rep.Destinations {
			sum.FreeMin = min(sum.FreeMin, d.FreeMin)
		}
		return nil
	})
	return sum, err
}

// NamespacesCollector exports every network namespace's ports (a node's
// pods and containers), labelled with the namespace's inode, name, pod UID
// and container id. Label cardinality is bounded: the top N namespaces by
// ports in use get their own series, the rest are summed as netns="other".
// One scrape reads all namespaces concurrently.
type NamespacesCollector struct {
	list     func() ([]netns.Namespace, error)
	read     func(context.Context, netns.Namespace, *socktab.BoundOnlySearch) (NamespaceSummary, error)
	top      int
	timeout  time.Duration
	mu       sync.Mutex // one scrape at a time; guards errs and notes
	errs     changeLog
	notes    changeLog // what the namespaces' tables lack
	sockets  *prometheus.Desc
	inUse    *prometheus.Desc
	pool     *prometheus.Desc
	freeMin  *prometheus.Desc
	timeWait *prometheus.Desc
	bound    *prometheus.Desc
	count    *prometheus.Desc
	failed   *prometheus.Desc
}

// maxNamespaceReads bounds the namespaces read at once (each holds a locked
// OS thread while it is read).
const maxNamespaceReads = 8

// NewNamespacesCollector reads the namespaces spec selects under procRoot.
func NewNamespacesCollector(spec netns.Spec, procRoot string, top int, timeout time.Duration, log *slog.Logger) *NamespacesCollector {
	if procRoot == "" {
		procRoot = "/proc"
	}
	c := newNamespacesCollector(top, timeout, log)
	c.list = func() ([]netns.Namespace, error) { return netns.Resolve(spec, procRoot, netns.RunDir) }
	c.read = func(ctx context.Context, ns netns.Namespace, search *socktab.BoundOnlySearch) (NamespaceSummary, error) {
		return ReadNamespace(ctx, ns, procRoot, search)
	}
	return c
}

func newNamespacesCollector(top int, timeout time.Duration, log *slog.Logger) *NamespacesCollector {
	if top <= 0 {
		top = 10
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	labels := []string{"netns", "netns_name", "pod_uid", "container_id"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_netns_"+name, help, labels, nil)
	}
	return &NamespacesCollector{top: top, timeout: timeout, errs: newChangeLog(log, "namespaces"), notes: newChangeLog(log, "namespaces"),
		sockets:  d("tcp_sockets", "TCP sockets in the network namespace.", labels),
		inUse:    d("ephemeral_ports_in_use", "Ephemeral ports of the namespace's range held by some TCP socket.", labels),
		pool:     d("ephemeral_ports", "Ephemeral ports an autobind may take in the namespace (range minus reserved).", labels),
		freeMin:  d("ephemeral_ports_free_min", "Fewest ports a new connect() to any one destination can still take in the namespace (lower bound).", labels),
		timeWait: d("time_wait_sockets", "TCP sockets in TIME_WAIT in the namespace.", labels),
		bound:    d("bound_only_sockets", "TCP sockets bound without listen() or connect() in the namespace.", labels),
		count:    d("namespaces", "Network namespaces found.", nil),
		failed:   d("namespaces_unread", "Network namespaces that could not be read in this scrape.", nil),
	}
}

// Describe implements prometheus.Collector.
func (c *NamespacesCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sockets, c.inUse, c.pool, c.freeMin, c.timeWait, c.bound, c.count, c.failed} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *NamespacesCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nss, err := c.list()
	if err != nil {
		c.errs.report(err)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, 1)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	sums := make([]NamespaceSummary, len(nss))
	errs := make([]error, len(nss))
	var g errgroup.Group
	g.SetLimit(maxNamespaceReads)
	search := &socktab.BoundOnlySearch{} // one pass for every namespace of the scrape
	for i, ns := range nss {
		g.Go(func() error {
			sums[i], errs[i] = c.read(ctx, ns, search)
			return nil
		})
	}
	_ = g.Wait() // each namespace's error is in errs; the goroutines return nil
	var read []NamespaceSummary
	var firstErr error
	failed := 0
	for i := range nss {
		if errs[i] != nil {
			failed++
			if firstErr == nil {
				firstErr = fmt.Errorf("namespace %s: %w", nss[i].Label(), errs[i])
			}
			continue
		}
		read = append(read, sums[i])
	}
	c.errs.report(firstErr)
	c.notes.note(namespaceNotes(read))
	ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(len(nss)))
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, float64(failed))

	slices.SortFunc(read, func(a, b NamespaceSummary) int {
		return cmp.Or(cmp.Compare(b.InUse, a.InUse), cmp.Compare(a.NS.Inode, b.NS.Inode))
	})
	var other NamespaceSummary
	for i, s := range read {
		if i >= c.top {
			other.Sockets += s.Sockets
			other.InUse += s.InUse
			other.TimeWait += s.TimeWait
			other.BoundOnly += s.BoundOnly
			continue
		}
		l := []string{strconv.FormatUint(s.NS.Inode, 10), s.NS.Name, s.NS.PodUID, s.NS.ID}
		ch <- prometheus.MustNewConstMetric(c.sockets, prometheus.GaugeValue, float64(s.Sockets), l...)
		ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, float64(s.InUse), l...)
		ch <- prometheus.MustNewConstMetric(c.pool, prometheus.GaugeValue, float64(s.Pool), l...)
		ch <- prometheus.MustNewConstMetric(c.freeMin, prometheus.GaugeValue, float64(s.FreeMin), l...)
		ch <- prometheus.MustNewConstMetric(c.timeWait, prometheus.GaugeValue, float64(s.TimeWait), l...)
		ch <- prometheus.MustNewConstMetric(c.bound, prometheus.GaugeValue, float64(s.BoundOnly), l...)
	}
	if len(read) > c.top {
		l := []string{otherLabel, "", "", ""}
		ch <- prometheus.MustNewConstMetric(c.sockets, prometheus.GaugeValue, float64(other.Sockets), l...)
		ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, float64(other.InUse), l...)
		ch <- prometheus.MustNewConstMetric(c.timeWait, prometheus.GaugeValue, float64(other.TimeWait), l...)
		ch <- prometheus.MustNewConstMetric(c.bound, prometheus.GaugeValue, float64(other.BoundOnly), l...)
	}
}

// namespaceNotes is what the namespaces' tables lack, each note once with
// how many namespaces said it (a search every namespace shared fails for
// all of them alike), "" when nothing is lacking.
func namespaceNotes(read []NamespaceSummary) string {
	var order []string
	where := map[string][]string{}
	for _, s := range read {
		for _, n := range s.Notes {
			if where[n] == nil {
				order = append(order, n)
			}
			where[n] = append(where[n], s.NS.Label())
		}
	}
	parts := make([]string, len(order))
	for i, n := range order {
		if w := where[n]; len(w) == 1 {
			parts[i] = fmt.Sprintf("%s (namespace %s)", n, w[0])
		} else {
			parts[i] = fmt.Sprintf("%s (%d namespaces)", n, len(w))
		}
	}
	return strings.Join(parts, "; ")
}
