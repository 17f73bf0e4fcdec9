// Package tupled is what the tupled binary adds to tuple's commands: the
// Prometheus endpoints of tuple exporter and tuple broker --metrics (see
// cli.Services for why they are kept out of the tuple binary).
package tupled

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tuple-net/tuple/broker"
	"github.com/tuple-net/tuple/exporter"
	"github.com/tuple-net/tuple/internal/cli"
	"github.com/tuple-net/tuple/netns"
)

// Services are tupled's cli.Services.
func Services() cli.Services {
	return cli.Services{
		ServeExporter: func(ctx context.Context, ln net.Listener, o cli.ExporterOptions, errOut io.Writer) error {
			return serveExporter(ctx, ln, o, nil, errOut)
		},
		ServeBrokerMetrics: serveBrokerMetrics,
	}
}

// serveExporter serves the exporter o describes on ln until ctx ends, from
// src (nil: the live socket table).
func serveExporter(ctx context.Context, ln net.Listener, o cli.ExporterOptions, src exporter.Source, errOut io.Writer) error {
	h, closeSource, err := handler(o, src, errOut)
	if err != nil {
		ln.Close()
		return err
	}
	defer closeSource()
	// A log line that cannot be written has nowhere else to go.
	logf := func(msg string) { _, _ = fmt.Fprintf(errOut, "tuple exporter: %s\n", msg) }
	srv := exporter.NewServer(h, exporter.ServerOptions{MaxConns: o.MaxConns, IdleTimeout: o.IdleTimeout, ScrapeTimeout: o.Timeout, Log: logf})
	return serveUntil(ctx, srv, ln)
}

// handler is the /metrics handler with the collectors the flags ask for,
// logging to errOut; closeSource releases the socket table source.
func handler(o cli.ExporterOptions, src exporter.Source, errOut io.Writer) (h http.Handler, closeSource func(), err error) {
	log := slog.New(slog.NewTextHandler(errOut, nil))
	closeSource = func() {}
	if src == nil {
		live := exporter.LiveSource(o.ProcRoot, o.Owners, o.KernelFacts)
		src, closeSource = live, func() { live.Close() }
	}
	var extra []prometheus.Collector
	if o.Netns != "" {
		spec, err := netns.ParseSpec(o.Netns)
		if err != nil {
			closeSource()
			return nil, nil, err
		}
		extra = append(extra, exporter.NewNamespacesCollector(spec, o.ProcRoot, o.Top, o.Timeout, log))
	}
	if o.NAT {
		extra = append(extra, exporter.NewNATCollector(nil, o.Top, o.Timeout, log))
	}
	h, err = exporter.Handler(exporter.New(src, exporter.Options{Top: o.Top, HogShare: o.HogShare / 100, Timeout: o.Timeout, Log: log}), extra...)
	if err != nil {
		closeSource()
		return nil, nil, err
	}
	return h, closeSource, nil
}

// serveUntil serves on ln until ctx ends, then shuts the server down,
// giving open scrapes 5 seconds.
func serveUntil(ctx context.Context, srv *exporter.Server, ln net.Listener) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving metrics on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shutting down the metrics server: %w", err)
	}
	return nil
}

// serveBrokerMetrics serves srv's metrics on ln until stop is called.
func serveBrokerMetrics(ln net.Listener, srv *broker.Server, logf func(string)) (stop func()) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&brokerCollector{s: srv})
	hs := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logf(err.Error())
		}
	}()
	return func() {
		hs.Close()
		<-done
	}
}
