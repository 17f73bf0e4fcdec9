package exporter

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// holdersCollector exports who holds ephemeral ports: ports held and
// bound-only sockets per uid (top N uids by ports, the rest as uid="other"),
// the signal for one user starving everyone else by binding without
// connecting.
type holdersCollector struct {
	held, boundOnly, share *prometheus.Desc
}

func newHoldersCollector() *holdersCollector {
	return &holdersCollector{
		held: prometheus.NewDesc(namespace+"_ephemeral_ports_held", "Distinct ephemeral ports held by live TCP sockets of a uid.",
			[]string{"uid"}, nil),
		boundOnly: prometheus.NewDesc(namespace+"_bound_only_sockets", "TCP sockets of a uid bound without listen() or connect().",
			[]string{"uid"}, nil),
		share: prometheus.NewDesc(namespace+"_ephemeral_ports_held_ratio", "Share (0..1) of the ephemeral range held by the uid holding the most ports.",
			nil, nil),
	}
}

func (c *holdersCollector) describe(ch chan<- *prometheus.Desc) {
	ch <- c.held
	ch <- c.boundOnly
	ch <- c.share
}

func (c *holdersCollector) update(s *snapshot, ch chan<- prometheus.Metric) error {
	if err := s.needBudget(); err != nil {
		return err
	}
	var otherHeld, otherBound int
	maxShare := 0.0
	for i, h := range s.report.UIDs { // most ports first
		maxShare = max(maxShare, h.Share)
		if i >= s.top {
			otherHeld += h.Ports
			otherBound += h.BoundOnly
			continue
		}
		uid := strconv.FormatUint(uint64(h.UID), 10)
		ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(h.Ports), uid)
		ch <- prometheus.MustNewConstMetric(c.boundOnly, prometheus.GaugeValue, float64(h.BoundOnly), uid)
	}
	if len(s.report.UIDs) > s.top {
		ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(otherHeld), otherLabel)
		ch <- prometheus.MustNewConstMetric(c.boundOnly, prometheus.GaugeValue, float64(otherBound), otherLabel)
	}
	ch <- prometheus.MustNewConstMetric(c.share, prometheus.GaugeValue, maxShare)
	return nil
}
