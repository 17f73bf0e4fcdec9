package exporter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/ports"
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
	for _, n := range s.counts {
		ch <- prometheus.MustNewConstMetric(c.sockets, prometheus.GaugeValue, float64(n.n), n.proto.String(), n.state.String())
	}
	ch <- prometheus.MustNewConstMetric(c.timeWait, prometheus.GaugeValue, float64(s.timeWait))
	return nil
}

// socketCount is the number of sockets of one protocol in one state.
type socketCount struct {
	proto inet.Proto
	state socktab.State
	n     int
}

// countSockets counts socks per protocol and state, and the TCP sockets in
// TIME_WAIT, with tcp's counts (a ports.Reader's) when not nil.
func countSockets(socks []socktab.Socket, tcp *ports.Table) (counts []socketCount, timeWait int) {
	type key struct {
		proto inet.Proto
		state socktab.State
	}
	m := map[key]int{}
	for i := range socks {
		sk := &socks[i]
		m[key{sk.Proto, sk.State}]++
	}
	if tcp != nil {
		for st, n := range tcp.Counts {
			if n > 0 {
				m[key{inet.TCP, socktab.State(st)}] += n
			}
		}
	}
	for k, n := range m {
		counts = append(counts, socketCount{k.proto, k.state, n})
	}
	return counts, m[key{inet.TCP, socktab.TimeWait}]
}
