package exporter

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tuple-net/tuple/nat"
)

// NATCollector exports the source-NAT port budget per NAT address,
// protocol and destination (top N destinations by ports in use, the rest
// summed as destination="other"), and conntrack's failure counters: the
// signal for a masquerading node running out of ports towards one
// destination. It reads nftables and conntrack each scrape (CAP_NET_ADMIN).
type NATCollector struct {
	read    func(context.Context) (nat.Snapshot, error)
	top     int
	timeout time.Duration

	inUse, free, size, translated, rules *prometheus.Desc
	insertFailed, drop, earlyDrop, up    *prometheus.Desc
	mu                                   sync.Mutex // one read at a time; guards errs
	errs                                 changeLog
}

// NewNATCollector reads with read (nat.Read when nil); top bounds the
// destination series; failures are logged to log once per change.
func NewNATCollector(read func(context.Context) (nat.Snapshot, error), top int, timeout time.Duration, log *slog.Logger) *NATCollector {
	if read == nil {
		read = nat.Read
	}
	if top <= 0 {
		top = 10
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	labels := []string{"nat_address", "proto", "destination"}
	return &NATCollector{
		read: read, top: top, timeout: timeout, errs: newChangeLog(log, "nat"),
		inUse: prometheus.NewDesc(namespace+"_nat_ports_in_use",
			"Ports of the source-NAT rule's range held towards a destination on a NAT address (conntrack).", labels, nil),
		free: prometheus.NewDesc(namespace+"_nat_ports_free",
			"Ports the source-NAT rule can still hand out towards a destination on a NAT address.", labels, nil),
		size: prometheus.NewDesc(namespace+"_nat_ports",
			"Ports in the source-NAT rule's range (1024-65535 when the rule names none).", labels, nil),
		translated: prometheus.NewDesc(namespace+"_nat_translated_connections",
			"Conntrack entries whose source the NAT rewrote, per NAT address and destination.", labels, nil),
		rules: prometheus.NewDesc(namespace+"_nat_rules",
			"Source-NAT rules (nftables snat/masquerade, iptables-nft SNAT/MASQUERADE) on postrouting.", nil, nil),
		insertFailed: prometheus.NewDesc(namespace+"_conntrack_insert_failed_total",
			"Connections dropped because their (translated) tuple clashed at conntrack insertion, all CPUs.", nil, nil),
		drop: prometheus.NewDesc(namespace+"_conntrack_drop_total",
			"Packets conntrack dropped (table full or insertion failed), all CPUs.", nil, nil),
		earlyDrop: prometheus.NewDesc(namespace+"_conntrack_early_drop_total",
			"Conntrack entries evicted early to make room in a full table, all CPUs.", nil, nil),
		up: prometheus.NewDesc(namespace+"_nat_scrape_success",
			"1 when the NAT rules and conntrack table were read in this scrape, 0 when not.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *NATCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.inUse, c.free, c.size, c.translated, c.rules, c.insertFailed, c.drop, c.earlyDrop, c.up} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *NATCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	snap, err := c.read(ctx)
	c.errs.report(err)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.rules, prometheus.GaugeValue, float64(len(snap.Rules)))
	ch <- prometheus.MustNewConstMetric(c.insertFailed, prometheus.CounterValue, float64(snap.Counters.InsertFailed))
	ch <- prometheus.MustNewConstMetric(c.drop, prometheus.CounterValue, float64(snap.Counters.Drop))
	ch <- prometheus.MustNewConstMetric(c.earlyDrop, prometheus.CounterValue, float64(snap.Counters.EarlyDrop))

	// Budgets come fewest free first: the top N are the ones to watch.
	type otherKey struct{ addr, proto string }
	otherUse, otherTranslated := map[otherKey]int{}, map[otherKey]int{}
	for i, b := range snap.Budgets() {
		addr := b.NATAddress.String()
		if i >= c.top {
			k := otherKey{addr, b.Proto}
			otherUse[k] += b.InUse
			otherTranslated[k] += b.Translated
			continue
		}
		l := []string{addr, b.Proto, b.Destination.String()}
		ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, float64(b.InUse), l...)
		ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(b.Free), l...)
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(b.Size), l...)
		ch <- prometheus.MustNewConstMetric(c.translated, prometheus.GaugeValue, float64(b.Translated), l...)
	}
	for k, n := range otherUse {
		ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, float64(n), k.addr, k.proto, otherLabel)
		ch <- prometheus.MustNewConstMetric(c.translated, prometheus.GaugeValue, float64(otherTranslated[k]), k.addr, k.proto, otherLabel)
	}
}
