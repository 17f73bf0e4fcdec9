// Package exporter serves the ephemeral-port budget and the socket table as
// Prometheus metrics, so operators of many machines can alert on port
// exhaustion and port hogging before connect() starts failing.
//
// One Exporter is one prometheus.Collector. Each scrape takes one snapshot of
// the namespace (socket table and sysctls, through a Source), then runs every
// concern's collector (one file each, all registered in registered()) over
// that snapshot. Per collector it reports
// tuple_scrape_collector_duration_seconds and tuple_scrape_collector_success:
// a failed collector shows success 0 and its metrics are left out; the
// scrape still succeeds.
//
// Label cardinality is bounded: destinations and uids are the top N by use,
// the rest summed into one "other" series.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(exporter.New(exporter.LiveSource("/proc", false, true), exporter.Options{}))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// An Exporter is safe for concurrent scrapes: snapshots are taken one at a
// time under a lock, and each scrape works on its own. Reading the live table
// needs no privileges for sockets and uids; root for process owners.
package exporter
