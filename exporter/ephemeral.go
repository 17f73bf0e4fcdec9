package exporter

import (
	"github.com/prometheus/client_golang/prometheus"
)

// otherLabel is the series that sums everything beyond the top N.
const otherLabel = "other"

// ephemeralCollector exports the ephemeral-port budget: the range, the
// ports in use and free per destination (top N by fewest free, the rest
// summed under "other"), and what a bind(0) or a connect() to a new
// destination could still take.
type ephemeralCollector struct {
	ports, inUse, free, bindFree, bindOwned, unknown *prometheus.Desc
}

func newEphemeralCollector() *ephemeralCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
	}
	return &ephemeralCollector{
		ports: d("ephemeral_ports", "Ports an autobind may take: net.ipv4.ip_local_port_range minus ip_local_reserved_ports."),
		inUse: d("ephemeral_ports_in_use", "Ephemeral ports used by live TCP sockets from source to destination (top destinations by fewest free; the rest summed as destination=\"other\").",
			"source", "destination"),
		free: d("ephemeral_ports_free", "Ephemeral ports a new connect() from source to destination can still take (destination=\"*\": a destination nobody uses yet). "+
			"bound=\"lower\" counts ports of unknown origin as taken by bind(), bound=\"upper\" as taken by connect().",
			"source", "destination", "bound"),
		bindFree:  d("ephemeral_ports_bind_free", "Ephemeral ports a bind(0.0.0.0:0) without SO_REUSEADDR can still take."),
		bindOwned: d("ephemeral_ports_bind_owned", "Ephemeral ports held by bind()/listen() owners: out of connect()'s pool for every destination."),
		unknown:   d("ephemeral_ports_unknown_origin", "Ephemeral ports held only by connected sockets whose port may come from bind() or connect()."),
	}
}

func (c *ephemeralCollector) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ports, c.inUse, c.free, c.bindFree, c.bindOwned, c.unknown} {
		ch <- d
	}
}

func (c *ephemeralCollector) update(s *snapshot, ch chan<- prometheus.Metric) error {
	if err := s.needBudget(); err != nil {
		return err
	}
	r := &s.report
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(c.ports, r.Pool)
	gauge(c.bindFree, r.BindFree)
	gauge(c.bindOwned, r.BindOwned)
	gauge(c.unknown, r.UnknownOrigin)
	gauge(c.free, r.ConnectFreeMin, "*", "*", "lower")
	gauge(c.free, r.ConnectFreeMax, "*", "*", "upper")
	other := 0
	for i, d := range r.Destinations { // fewest free first: the busiest lead
		if i >= s.top {
			other += d.InUse
			continue
		}
		src, dst := d.Source.String(), d.Dest.String()
		gauge(c.inUse, d.InUse, src, dst)
		gauge(c.free, d.FreeMin, src, dst, "lower")
		gauge(c.free, d.FreeMax, src, dst, "upper")
	}
	if len(r.Destinations) > s.top {
		gauge(c.inUse, other, otherLabel, otherLabel)
	}
	return nil
}
