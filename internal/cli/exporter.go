package cli

import (
	"context"
	"net"
	"net/netip"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tuple-net/tuple/sockopt"
	"github.com/tuple-net/tuple/socktab"
)

// ExporterOptions are the flags of `tuple exporter`, checked; tupled serves
// them (Services.ServeExporter).
type ExporterOptions struct {
	Listen      string
	Top         int
	HogShare    float64 // percent
	ProcRoot    string
	Owners      bool
	KernelFacts bool
	NAT         bool
	Netns       string // --netns: also export these namespaces' ports
	Timeout     time.Duration
	MaxConns    int
	IdleTimeout time.Duration
}

func newExporterCmd(s Streams) *cobra.Command {
	var o ExporterOptions
	cmd := &cobra.Command{
		Use:   "exporter --listen ADDR:PORT",
		Short: "Serve the ephemeral-port budget and socket counts as Prometheus metrics",
		Long: `tuple exporter serves /metrics for Prometheus: the ephemeral range, ports in use and
free per destination (top N destinations, the rest as "other"), bind(0) headroom,
sockets per state, TIME_WAIT, bound-only sockets and ports held per uid, and per
collector scrape duration and success. It stops cleanly on SIGINT or SIGTERM.

Alert rules and a Grafana dashboard for these metrics are in deploy/.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return runExporter(cmd.Context(), o, s)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", "127.0.0.1:9779", "address to serve metrics on, `ADDR:PORT`")
	f.IntVar(&o.Top, "top", 10, "destinations and uids with their own series; the rest are summed as \"other\"")
	f.Float64Var(&o.HogShare, "hog-share", 50, "percentage of the ephemeral range one uid may hold before ports warns")
	f.StringVar(&o.ProcRoot, "proc", "/proc", "procfs mount to read sysctls and owners from")
	f.BoolVar(&o.Owners, "owners", false, "also read owning processes and live options (slower: scans /proc/*/fd each scrape)")
	f.BoolVar(&o.KernelFacts, "kernel-facts", true, "read the kernel's own socket records (BPF iterator, root) so free-port counts are exact; --kernel-facts=false scrapes faster and reports ranges")
	f.StringVar(&o.Netns, "netns", "", "also export the ports of these network namespaces (all: every pod and container), top N by ports in use: all, a name under /run/netns, a PID or a path")
	f.BoolVar(&o.NAT, "nat", false, "also export the source-NAT port budget per NAT address and destination and conntrack's failure counters (reads nftables and conntrack; CAP_NET_ADMIN)")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Second, "longest a scrape may spend reading the socket table")
	f.IntVar(&o.MaxConns, "max-conns", 0, "most HTTP connections held at once; beyond it the longest-idle one is closed (default: 256, less under a low RLIMIT_NOFILE)")
	f.DurationVar(&o.IdleTimeout, "idle-timeout", 30*time.Second, "close keep-alive connections idle this long")
	return cmd
}

func runExporter(ctx context.Context, o ExporterOptions, s Streams) error {
	if err := o.check(); err != nil {
		return err
	}
	if services.ServeExporter == nil {
		return forwardToTupled(s, "exporter")
	}
	if o.MaxConns == 0 {
		// Half the descriptors for connections, the rest for scrapes
		// (netlink sockets, /proc reads).
		o.MaxConns = max(1, min(256, (nofileLimit()-reservedFDs)/2))
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	defer serverGC(ctx, o.ProcRoot)()
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", o.Listen)
	if err != nil {
		// Reported as listen's failures are: the errno in words and what
		// holds the port, from the socket table and the rules model.
		f := newNetFailure("listen", "tcp", netip.AddrPort{}, netip.AddrPort{}, err)
		f.opts, f.noFlags, f.target = sockopt.Options{ReuseAddr: reuseAddrDefault}, true, o.Listen
		return reportNetFailure(s.Err, f)
	}
	warnf(s.Err, "tuple exporter: serving http://%s/metrics\n", ln.Addr())
	if err := services.ServeExporter(ctx, ln, o, s.Err); err != nil {
		return err
	}
	warnf(s.Err, "tuple exporter: stopped\n")
	return nil
}

// checkServeAddr rejects a flag's ADDR:PORT to serve HTTP on that is not
// one (bad input, exit 2).
func checkServeAddr(flag, v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil || port == "" {
		return usageError("%s %q: want ADDR:PORT, e.g. 127.0.0.1:9779", flag, v)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return usageError("%s %q: bad port %q", flag, v, port)
	}
	return nil
}

// check rejects bad flag values (bad input, exit 2).
func (o ExporterOptions) check() error {
	if err := checkServeAddr("--listen", o.Listen); err != nil {
		return err
	}
	if o.Top < 1 {
		return usageError("--top %d: want at least 1", o.Top)
	}
	if !(o.HogShare > 0 && o.HogShare <= 100) { // NaN fails both
		return usageError("--hog-share %g: want a percentage above 0 and at most 100", o.HogShare)
	}
	if o.Timeout <= 0 {
		return usageError("--timeout %v: want a positive duration", o.Timeout)
	}
	if o.MaxConns < 0 {
		return usageError("--max-conns %d: want at least 1 (0: from the limits)", o.MaxConns)
	}
	if o.IdleTimeout < 0 {
		return usageError("--idle-timeout %v: want a positive duration", o.IdleTimeout)
	}
	if o.Netns != "" && o.Netns != "all" {
		// One namespace named: it must be one now, as for every other
		// command, not only in the scrapes' logs. (all: pods come and go.)
		if _, err := resolveNamespaces("exporter", o.Netns, o.ProcRoot); err != nil {
			return err
		}
	}
	return nil
}

// serverGC keeps the exporter's heap level: each snapshot reads the whole
// socket table and lets it go, so with the default collector the heap
// doubles past each snapshot and the resident set swings with it (the soak
// in docs/benchmarks.md saw 185-886 MiB at 200,000 sockets). Instead the
// collector runs only near a memory limit sized from the table
// (/proc/net/sockstat, as batchGC), checked again every 10 s as the table
// grows or shrinks. The returned function restores the settings.
func serverGC(ctx context.Context, procRoot string) (restore func()) {
	set := func() {
		if st, err := socktab.ReadSockstat(procRoot); err == nil {
			debug.SetMemoryLimit(gcLimit(st.Sockets()))
		}
	}
	limit := debug.SetMemoryLimit(gcLimit(0))
	percent := debug.SetGCPercent(-1)
	set()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				set()
			}
		}
	}()
	return func() {
		cancel()
		<-done
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}
