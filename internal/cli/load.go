package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tuple-net/tuple/dial"
	"github.com/tuple-net/tuple/load"
	"github.com/tuple-net/tuple/socktab"
)

// loadOptions are the flags of tuple load.
type loadOptions struct {
	From        string
	To          string
	Conns       int
	Policy      string
	Hold        time.Duration
	JSON        bool
	Listen      string
	Procs       int
	PerProc     int
	Timeout     time.Duration
	Concurrency int
	StopAfter   int
	UDP         bool
}

func newLoadCmd(s Streams) *cobra.Command {
	var o loadOptions
	cmd := &cobra.Command{
		Use:   "load --to ADDR:PORT[,ADDR:PORT...] --conns N [--from ADDR] [--policy P] [--hold D] [--json]\n  tuple load --listen ADDR:PORT --hold D [--procs N]",
		Short: "Open and hold many connections with a source-port policy, or be their sink",
		Long: `tuple load opens --conns connections round-robin over the --to destinations from
--from with a source-port policy, holds them for --hold, and reports how many were
established, errors by errno, connect rate, latency p50/p99 and distinct local ports.
Connections are spread over worker processes (at most --per-proc each: by default
as many as the file limit, RLIMIT_NOFILE, lets one process hold).

Policies: kernel (plain connect, no bind), bind (bind(src,0) then connect, as Go's
LocalAddr does), shared (IP_BIND_ADDRESS_NO_PORT: ports shared across destinations;
the default with --from), fixed:PORT (SO_REUSEADDR+SO_REUSEPORT on one port),
range:LO-HI (IP_LOCAL_PORT_RANGE per socket). A destination is given up after
--stop-after identical errors in a row (an exhausted policy).

With -u, the sockets are UDP: connect() picks the source port by the policy and
holds the four-tuple without sending anything, so no sink is needed, and the report
counts connected sockets (UDP's port budget: DNS clients, QUIC, statsd).

With --listen, tuple load is the sink: --procs processes share the port with
SO_REUSEPORT, accept and hold connections for --hold, then exit.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if o.Listen != "" {
				if o.UDP {
					return usageError("load: --listen with -u: a UDP load needs no sink (connect() sends nothing)")
				}
				return runSink(ctx, o, s)
			}
			return runLoad(ctx, o, s)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.From, "from", "", "source address (default: the kernel picks)")
	f.StringVar(&o.To, "to", "", "destinations ADDR:PORT, comma-separated")
	f.IntVar(&o.Conns, "conns", 0, "connections to open")
	f.StringVar(&o.Policy, "policy", "", "kernel|bind|shared|fixed:PORT|range:LO-HI (default shared with --from, kernel without)")
	f.DurationVar(&o.Hold, "hold", 0, "how long to hold the connections once opened (the sink: how long to run)")
	f.BoolVarP(&o.UDP, "udp", "u", false, "connect UDP sockets (each holds a four-tuple; nothing is sent)")
	f.BoolVar(&o.JSON, "json", false, "print one JSON object")
	f.StringVar(&o.Listen, "listen", "", "be the sink: accept and hold connections on ADDR:PORT")
	f.IntVar(&o.Procs, "procs", 4, "sink processes sharing the port")
	f.IntVar(&o.PerProc, "per-proc", 0, perProcUsage())
	f.DurationVar(&o.Timeout, "timeout", 5*time.Second, "connect timeout")
	f.IntVar(&o.Concurrency, "concurrency", 32, "connects in flight per worker process")
	f.IntVar(&o.StopAfter, "stop-after", 20, "give up a destination after this many identical errors in a row")
	return cmd
}

// perProcUsage says what --per-proc defaults to on this machine.
func perProcUsage() string {
	u := fmt.Sprintf("most connections per worker process (default: the file limit RLIMIT_NOFILE less %d descriptors a worker keeps for itself", load.Reserve)
	if n, err := load.PerProcMax(); err == nil {
		return fmt.Sprintf("%s, %d here)", u, n)
	}
	return u + ")"
}

// spec checks the flags of a client run and makes its load.Spec.
func (o loadOptions) spec() (load.Spec, error) {
	sp := load.Spec{Conns: o.Conns, UDP: o.UDP, Hold: o.Hold, Timeout: o.Timeout, Concurrency: o.Concurrency, StopAfter: o.StopAfter}
	var err error
	// The policy first: a wrong one is the error to name, whatever else
	// is missing.
	if o.Policy != "" {
		if sp.Policy, err = dial.ParsePolicy(o.Policy); err != nil {
			return sp, usageError("load: --policy: %v", err)
		}
		if sp.Policy.Kind() == dial.KindShared && o.From == "" {
			return sp, usageError("load: --policy shared binds every connection to --from ADDR; give --from (without it the kernel would choose, as --policy kernel)")
		}
	}
	perProc, limErr := load.PerProcMax()
	switch {
	case o.To == "":
		return sp, usageError("load: --to ADDR:PORT is required (or --listen for the sink)")
	case o.Conns < 1:
		return sp, usageError("load: --conns must be at least 1, got %d", o.Conns)
	case o.Hold < 0:
		return sp, usageError("load: --hold must not be negative")
	case o.PerProc < 0 || limErr == nil && o.PerProc > perProc:
		return sp, usageError("load: --per-proc must be 1-%d (the file limit RLIMIT_NOFILE %d less %d descriptors a worker keeps for itself), got %d",
			perProc, perProc+load.Reserve, load.Reserve, o.PerProc)
	case o.PerProc == 0 && limErr != nil:
		return sp, usageError("load: give --per-proc: %v", limErr)
	case o.Concurrency < 1 || o.StopAfter < 1 || o.Timeout <= 0:
		return sp, usageError("load: --concurrency, --stop-after and --timeout must be positive")
	}
	if o.PerProc > 0 {
		perProc = o.PerProc
	}
	if o.Conns > load.MaxWorkers*perProc {
		return sp, usageError("load: --conns %d needs more than %d worker processes of --per-proc %d", o.Conns, load.MaxWorkers, perProc)
	}
	sp.PerProc = perProc
	if o.From != "" {
		if sp.From, err = netip.ParseAddr(o.From); err != nil {
			return sp, usageError("load: --from %q is not an IP address", o.From)
		}
	}
	for _, t := range strings.Split(o.To, ",") {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(t))
		if err != nil || ap.Port() == 0 {
			return sp, usageError("load: --to %q: want ADDR:PORT ([ADDR]:PORT for IPv6) with port 1-65535", t)
		}
		if sp.From.IsValid() && sp.From.Is4() != ap.Addr().Is4() {
			return sp, usageError("load: --from %s and --to %s are of different address families", sp.From, ap)
		}
		sp.To = append(sp.To, ap)
	}
	if sp.Policy.Kind() == dial.KindKernel && sp.From.IsValid() {
		return sp, usageError("load: --policy kernel does not bind, so the kernel picks the source address: drop --from or use --policy shared")
	}
	return sp, nil
}

func writeLoadText(out io.Writer, r load.Report) error {
	w := bufio.NewWriter(out)
	from := r.From
	if from == "" {
		from = "(kernel's choice)"
	}
	what, done := loadWords(r.Proto == "udp")
	fmt.Fprintf(w, "policy %s from %s to %d destination(s): %d of %d %s %s at once\n",
		r.Policy, from, len(r.To), r.Established, r.Requested, what, done)
	if len(r.Errors) > 0 {
		names := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			names = append(names, k)
		}
		sort.Strings(names)
		var parts []string
		for _, k := range names {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Errors[k]))
		}
		fmt.Fprintf(w, "errors: %s\n", strings.Join(parts, ", "))
	}
	if len(r.GivenUp) > 0 {
		fmt.Fprintf(w, "gave up after repeated errors: %s\n", strings.Join(r.GivenUp, ", "))
	}
	fmt.Fprintf(w, "connect rate: %.0f/s over %.2fs (%d worker processes, %.1f µs CPU per connect)\n",
		r.RatePerS, r.ElapsedS, r.Workers, r.CPUUSPer)
	fmt.Fprintf(w, "connect latency: p50 %.3f ms, p99 %.3f ms\n", r.P50ms, r.P99ms)
	fmt.Fprintf(w, "distinct local ports: %d\n", r.LocalPorts)
	if r.Interrupted {
		fmt.Fprintln(w, "interrupted before every connection was attempted")
	}
	return w.Flush()
}

// loadWords names what a load holds and what holding one is called.
func loadWords(udp bool) (what, done string) {
	if udp {
		return "UDP sockets", "connected"
	}
	return "connections", "established"
}

func runLoad(ctx context.Context, o loadOptions, s Streams) error {
	sp, err := o.spec()
	if err != nil {
		return err
	}
	if sp.Policy.Kind() == dial.KindRange {
		warnPortRangeIgnored(s.Err, "--policy "+o.Policy, sp.Policy.Ports())
	}
	_, done := loadWords(o.UDP)
	show := progressLine(s.Err, done, o.Conns)
	sp.Stderr, sp.Progress = s.Err, show
	var outErr error
	sp.Opened = func(r load.Report) error {
		show(-1)
		if o.JSON {
			outErr = json.NewEncoder(s.Out).Encode(r)
		} else {
			outErr = writeLoadText(s.Out, r)
		}
		return nil
	}
	r, err := load.Run(ctx, sp)
	if fl := (*load.FileLimitError)(nil); errors.As(err, &fl) {
		return fmt.Errorf("load: %w; lower --per-proc or raise the file limit (ulimit -n)", err)
	}
	if err != nil {
		return err
	}
	if outErr != nil {
		return fmt.Errorf("writing the report: %w", outErr)
	}
	if r.Interrupted || r.Established == 0 {
		return exitCode(exitFailure)
	}
	return nil
}

// sinkPortFree refuses a sink on a port where another program listens on
// an overlapping address: with SO_REUSEPORT and the same uid, the sink's
// listeners would join that program's group and quietly take part of its
// connections (and otherwise their bind fails).
func sinkPortFree(ctx context.Context, ap netip.AddrPort) error {
	t, err := socktab.Snapshot(ctx, socktab.Query{TCP: true, LocalPort: ap.Port(), States: socktab.States(socktab.Listen), Owners: true})
	if err != nil {
		return nil // the bind says what is wrong, if anything
	}
	want := ap.Addr().Unmap()
	for _, sk := range t.Sockets {
		have := sk.Local.Addr().Unmap()
		if have != want && !have.IsUnspecified() && !want.IsUnspecified() {
			continue
		}
		who := "another socket"
		if len(sk.Owners) > 0 {
			who = fmt.Sprintf("pid %d (%s)", sk.Owners[0].PID, sk.Owners[0].Comm)
		}
		return fmt.Errorf("load: --listen %s: %s already listens on %s: the sink's SO_REUSEPORT listeners would join its group and take its connections; pick another port", ap, who, sk.Local)
	}
	return nil
}

func runSink(ctx context.Context, o loadOptions, s Streams) error {
	ap, err := netip.ParseAddrPort(o.Listen)
	if err != nil {
		return usageError("load: --listen %q: want ADDR:PORT ([ADDR]:PORT for IPv6)", o.Listen)
	}
	switch {
	case o.Hold <= 0:
		return usageError("load: the sink needs --hold, how long to run (e.g. --hold 60s)")
	case o.Procs < 1 || o.Procs > load.MaxSinkProcs:
		return usageError("load: --procs must be 1-%d, got %d", load.MaxSinkProcs, o.Procs)
	case o.To != "" || o.From != "":
		return usageError("load: --listen runs the sink; it takes no --to or --from")
	}
	if err := sinkPortFree(ctx, ap); err != nil {
		return err
	}
	show := progressLine(s.Err, "accepted", 0)
	r, err := load.Sink(ctx, load.SinkSpec{Listen: ap, Procs: o.Procs, Hold: o.Hold, Stderr: s.Err, Progress: show,
		Ready: func(addr netip.AddrPort) {
			warnf(s.Err, "tuple load: sink listening on %s with %d processes (SO_REUSEPORT) for %s\n", addr, o.Procs, o.Hold)
		}})
	var fl *load.FileLimitError
	if err != nil && !errors.As(err, &fl) {
		return err
	}
	show(-1)
	if o.JSON {
		if jerr := json.NewEncoder(s.Out).Encode(r); jerr != nil {
			return jerr
		}
	} else if _, werr := fmt.Fprintf(s.Out, "sink %s: %d connections accepted and held by %d processes %v\n", r.Listen, r.Accepted, o.Procs, r.PerProc); werr != nil {
		return werr
	}
	if err != nil {
		return fmt.Errorf("load: sink: %w; the connections beyond it waited in the accept queue: raise the file limit (ulimit -n) or --procs", err)
	}
	return nil
}

// progressLine returns a function that shows a count on stderr when it is a
// terminal (want 0: no total); -1 clears the line.
func progressLine(w io.Writer, what string, want int) func(int) {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return func(int) {}
	}
	return func(n int) {
		if n < 0 {
			warnf(f, "\r\033[K")
			return
		}
		if want > 0 {
			warnf(f, "\rtuple load: %d/%d %s", n, want, what)
		} else {
			warnf(f, "\rtuple load: %d %s", n, what)
		}
	}
}
