package exporter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/socktab"
)

// socketsCollector exports socket counts by protocol and state, and the
// TIME_WAIT count on its own since it is what alerts and dashboards watch.
type socketsCollector struct {
	sockets, timeWait *prometheus.Desc
}

func newSocketsCollector() *socketsCollector {
	return &socketsCollector{
		sockets: prometheus.NewDesc(namespace+"_sockets", "Sockets in the namespace by protocol and state (UDP: close = unconnected).",
			[]string{"proto", "state"}, nil),
		timeWait: prometheus.NewDesc(namespace+"_time_wait_sockets", "TCP sockets in TIME_WAIT.", nil, nil),
	}
}

func (c *socketsCollector) describe(ch chan<- *prometheus.Desc) {
	ch <- c.sockets
	ch <- c.timeWait
}

func (c *socketsCollector) update(s *snapshot, ch chan<- prometheus.Metric) error {
	if err := s.needTable(); err != nil {
		return err
	}
	type key struct {
		proto inet.Proto
		state socktab.State
	}
	counts := map[key]int{}
	tw := 0
	for i := range s.Table.Sockets {
		sk := &s.Table.Sockets[i]
		counts[key{sk.Proto, sk.State}]++
		if sk.Proto == inet.TCP && sk.State == socktab.TimeWait {
			tw++
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.sockets, prometheus.GaugeValue, float64(n), k.proto.String(), k.state.String())
	}
	ch <- prometheus.MustNewConstMetric(c.timeWait, prometheus.GaugeValue, float64(tw))
	return nil
}
