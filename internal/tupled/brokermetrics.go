package tupled

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tuple-net/tuple/broker"
)

// brokerCollector exposes a Server's grants, denials and quota use per uid as
// Prometheus metrics. The broker serves them itself (tuple broker
// --metrics): it is the only process that knows its decisions, and a
// second process reading them over the broker socket would need a
// privileged protocol of its own.
type brokerCollector struct {
	s *broker.Server
}

var (
	descGranted = prometheus.NewDesc("tuple_broker_granted_total",
		"Sockets the broker handed over, per grantee uid.", []string{"uid"}, nil)
	descDenied = prometheus.NewDesc("tuple_broker_denied_total",
		"Requests the broker refused (policy, quota or bad request), per peer uid.", []string{"uid"}, nil)
	descQuotaDenied = prometheus.NewDesc("tuple_broker_quota_denied_total",
		"Of the refused requests, those refused because a quota was reached, per peer uid.", []string{"uid"}, nil)
	descFailed = prometheus.NewDesc("tuple_broker_failed_total",
		"Allowed requests whose socket could not be made or handed over (port in use, client gone), per peer uid.", []string{"uid"}, nil)
	descLive = prometheus.NewDesc("tuple_broker_live_sockets",
		"Handed-out sockets some process still holds, per grantee uid.", []string{"uid"}, nil)
	descLimit = prometheus.NewDesc("tuple_broker_uid_max_sockets",
		"The policy's max_sockets: live sockets one uid may hold across all grants (0: no limit).", nil, nil)
	descGrantLive = prometheus.NewDesc("tuple_broker_grant_live_sockets",
		"Live sockets per grantee uid under each grant of the current policy.", []string{"uid", "grant"}, nil)
	descGrantLimit = prometheus.NewDesc("tuple_broker_grant_max_sockets",
		"Each grant's max_sockets: live sockets per uid under it (0: no limit).", []string{"grant", "proto", "address", "ports", "group"}, nil)
	descReloads = prometheus.NewDesc("tuple_broker_policy_reloads_total",
		"Policy reloads (SIGHUP), by result.", []string{"result"}, nil)
	descPanics = prometheus.NewDesc("tuple_broker_handler_panics_total",
		"Client handlers that panicked; each was contained and its connection closed.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGranted, descDenied, descQuotaDenied, descFailed, descLive,
		descLimit, descGrantLive, descGrantLimit, descReloads, descPanics} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It checks with the kernel which
// handed-out sockets are still held before counting them.
func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p := c.s.Policy()
	for _, u := range c.s.Usage(ctx) {
		uid := strconv.FormatUint(uint64(u.UID), 10)
		ch <- prometheus.MustNewConstMetric(descGranted, prometheus.CounterValue, float64(u.Stats.Granted), uid)
		ch <- prometheus.MustNewConstMetric(descDenied, prometheus.CounterValue, float64(u.Stats.Denied), uid)
		ch <- prometheus.MustNewConstMetric(descQuotaDenied, prometheus.CounterValue, float64(u.Stats.QuotaDenied), uid)
		ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(u.Stats.Failed), uid)
		ch <- prometheus.MustNewConstMetric(descLive, prometheus.GaugeValue, float64(u.Live), uid)
		for idx, n := range u.PerGrant {
			ch <- prometheus.MustNewConstMetric(descGrantLive, prometheus.GaugeValue, float64(n), uid, strconv.Itoa(idx))
		}
	}
	ch <- prometheus.MustNewConstMetric(descLimit, prometheus.GaugeValue, float64(p.MaxSockets))
	for i := range p.Grants {
		g := &p.Grants[i]
		ch <- prometheus.MustNewConstMetric(descGrantLimit, prometheus.GaugeValue, float64(g.MaxSockets),
			strconv.Itoa(g.Index), g.Proto.String(), g.Address.String(), g.PortsText(), g.Group)
	}
	reloads, failed := c.s.Reloads()
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(reloads), "ok")
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(failed), "error")
	ch <- prometheus.MustNewConstMetric(descPanics, prometheus.CounterValue, float64(c.s.Panics()))
}
