package exporter

import (
	"fmt"
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves e's metrics (with the exporter process's own Go and process
// metrics, and any extra collectors such as the NATCollector) on /metrics and
// a short landing page on /.
func Handler(e *Exporter, extra ...prometheus.Collector) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	for _, c := range append([]prometheus.Collector{e, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}, extra...) {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// A client gone mid-page is not the exporter's failure: nothing to report.
		_, _ = io.WriteString(w, `<html><head><title>tuple exporter</title></head><body><h1>tuple exporter</h1><p><a href="/metrics">Metrics</a></p></body></html>`)
	})
	return mux, nil
}
