package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tuple-net/tuple/dial"
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
}

// maxPerProc keeps every worker well under the 20,000 descriptors a process
// may hold here.
const maxPerProc = 18000

// maxWorkers bounds the processes one tuple load starts.
const maxWorkers = 256

func newLoadCmd(s Streams) *cobra.Command {
	var o loadOptions
	cmd := &cobra.Command{
		Use:   "load --to ADDR:PORT[,ADDR:PORT...] --conns N [--from ADDR] [--policy P] [--hold D] [--json]\n  tuple load --listen ADDR:PORT --hold D [--procs N]",
		Short: "Open and hold many connections with a source-port policy, or be their sink",
		Long: `tuple load opens --conns connections round-robin over the --to destinations from
--from with a source-port policy, holds them for --hold, and reports how many were
established, errors by errno, connect rate, latency p50/p99 and distinct local ports.
Connections are spread over worker processes (at most --per-proc each).

Policies: kernel (plain connect, no bind), bind (bind(src,0) then connect, as Go's
LocalAddr does), shared (IP_BIND_ADDRESS_NO_PORT: ports shared across destinations;
the default with --from), fixed:PORT (SO_REUSEADDR+SO_REUSEPORT on one port),
range:LO-HI (IP_LOCAL_PORT_RANGE per socket). A destination is given up after
--stop-after identical errors in a row (an exhausted policy).

With --listen, tuple load is the sink: --procs processes share the port with
SO_REUSEPORT, accept and hold connections for --hold, then exit.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if o.Listen != "" {
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
	f.BoolVar(&o.JSON, "json", false, "print one JSON object")
	f.StringVar(&o.Listen, "listen", "", "be the sink: accept and hold connections on ADDR:PORT")
	f.IntVar(&o.Procs, "procs", 4, "sink processes sharing the port")
	f.IntVar(&o.PerProc, "per-proc", 15000, "most connections per worker process")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Second, "connect timeout")
	f.IntVar(&o.Concurrency, "concurrency", 32, "connects in flight per worker process")
	f.IntVar(&o.StopAfter, "stop-after", 20, "give up a destination after this many identical errors in a row")
	return cmd
}

// loadPlan is a validated load run.
type loadPlan struct {
	policy dial.Policy
	from   netip.Addr
	to     []netip.AddrPort
}

func (o loadOptions) plan() (loadPlan, error) {
	var p loadPlan
	var err error
	// The policy first: a wrong one is the error to name, whatever else
	// is missing.
	if o.Policy != "" {
		if p.policy, err = dial.ParsePolicy(o.Policy); err != nil {
			return p, usageError("load: --policy: %v", err)
		}
		if p.policy.Kind() == dial.KindShared && o.From == "" {
			return p, usageError("load: --policy shared binds every connection to --from ADDR; give --from (without it the kernel would choose, as --policy kernel)")
		}
	}
	switch {
	case o.To == "":
		return p, usageError("load: --to ADDR:PORT is required (or --listen for the sink)")
	case o.Conns < 1:
		return p, usageError("load: --conns must be at least 1, got %d", o.Conns)
	case o.Hold < 0:
		return p, usageError("load: --hold must not be negative")
	case o.PerProc < 1 || o.PerProc > maxPerProc:
		return p, usageError("load: --per-proc must be 1-%d (a process may hold 20,000 descriptors), got %d", maxPerProc, o.PerProc)
	case o.Conns > maxWorkers*o.PerProc:
		return p, usageError("load: --conns %d needs more than %d worker processes of --per-proc %d", o.Conns, maxWorkers, o.PerProc)
	case o.Concurrency < 1 || o.StopAfter < 1 || o.Timeout <= 0:
		return p, usageError("load: --concurrency, --stop-after and --timeout must be positive")
	}
	if o.From != "" {
		if p.from, err = netip.ParseAddr(o.From); err != nil {
			return p, usageError("load: --from %q is not an IP address", o.From)
		}
	}
	for _, t := range strings.Split(o.To, ",") {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(t))
		if err != nil || ap.Port() == 0 {
			return p, usageError("load: --to %q: want ADDR:PORT ([ADDR]:PORT for IPv6) with port 1-65535", t)
		}
		if p.from.IsValid() && p.from.Is4() != ap.Addr().Is4() {
			return p, usageError("load: --from %s and --to %s are of different address families", p.from, ap)
		}
		p.to = append(p.to, ap)
	}
	if p.policy.Kind() == dial.KindKernel && p.from.IsValid() {
		return p, usageError("load: --policy kernel does not bind, so the kernel picks the source address: drop --from or use --policy shared")
	}
	if p.policy.Kind() == dial.KindDefault {
		p.policy = dial.Kernel
		if p.from.IsValid() {
			p.policy = dial.Shared
		}
	}
	return p, nil
}

// loadReport is the result of a run, printed as text or as JSON.
type loadReport struct {
	Policy      string         `json:"policy"`
	From        string         `json:"from,omitempty"`
	To          []string       `json:"to"`
	Requested   int            `json:"requested"`
	Established int            `json:"established"`
	Errors      map[string]int `json:"errors"`
	RatePerS    float64        `json:"rate_per_s"`
	P50ms       float64        `json:"p50_ms"`
	P99ms       float64        `json:"p99_ms"`
	LocalPorts  int            `json:"local_ports"`
	Workers     int            `json:"workers"`
	ElapsedS    float64        `json:"elapsed_s"`
	CPUUSPer    float64        `json:"cpu_us_per_conn"` // workers' CPU time (mostly the kernel's connect) per attempt
	GivenUp     []string       `json:"given_up,omitempty"`
	Interrupted bool           `json:"interrupted,omitempty"`
}

// summarize merges the workers' results.
func summarize(results []workerMsg) loadReport {
	r := loadReport{Errors: map[string]int{}}
	var lat []int64
	ports := map[uint16]bool{}
	var slowest, cpu int64
	attempts := 0
	given := map[string]bool{}
	for _, m := range results {
		r.Established += m.Established
		attempts += m.Established + m.Failed
		cpu += m.CPUUS
		for k, v := range m.Errors {
			r.Errors[k] += v
		}
		lat = append(lat, m.LatencyUS...)
		for _, p := range m.Ports {
			ports[p] = true
		}
		slowest = max(slowest, m.ElapsedUS)
		for _, d := range m.Stopped {
			given[d] = true
		}
	}
	slices.Sort(lat)
	r.P50ms = percentile(lat, 50) / 1000
	r.P99ms = percentile(lat, 99) / 1000
	r.LocalPorts = len(ports)
	r.ElapsedS = float64(slowest) / 1e6
	if slowest > 0 {
		r.RatePerS = float64(r.Established) / r.ElapsedS
	}
	if attempts > 0 {
		r.CPUUSPer = float64(cpu) / float64(attempts)
	}
	for d := range given {
		r.GivenUp = append(r.GivenUp, d)
	}
	sort.Strings(r.GivenUp)
	return r
}

// percentile is the nearest-rank percentile of sorted values, 0 when empty.
func percentile(sorted []int64, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return float64(sorted[max(rank, 1)-1])
}

func (r loadReport) writeText(w io.Writer) {
	from := r.From
	if from == "" {
		from = "(kernel's choice)"
	}
	fmt.Fprintf(w, "policy %s from %s to %d destination(s): %d of %d connections established at once\n",
		r.Policy, from, len(r.To), r.Established, r.Requested)
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
}

func runLoad(ctx context.Context, o loadOptions, s Streams) error {
	p, err := o.plan()
	if err != nil {
		return err
	}
	n := (o.Conns + o.PerProc - 1) / o.PerProc
	var specs []workerSpec
	first := 0
	for i := range n {
		conns := o.Conns / n
		if i < o.Conns%n {
			conns++
		}
		spec := workerSpec{Policy: p.policy.String(), Conns: conns, First: first, Hold: o.Hold,
			Timeout: o.Timeout, Concurrency: o.Concurrency, StopAfter: o.StopAfter}
		if p.from.IsValid() {
			spec.From = p.from.String()
		}
		for _, t := range p.to {
			spec.To = append(spec.To, t.String())
		}
		specs = append(specs, spec)
		first += conns
	}
	g, err := startWorkers(specs, nil, s.Err)
	if err != nil {
		return err
	}
	defer g.stop()

	results := g.collect(ctx, progressLine(s.Err, "established", o.Conns))
	r := summarize(results)
	r.Policy, r.Requested, r.Workers = p.policy.String(), o.Conns, n
	r.From = specs[0].From
	r.To = specs[0].To
	r.Interrupted = ctx.Err() != nil || len(results) < n
	var outErr error
	if o.JSON {
		outErr = json.NewEncoder(s.Out).Encode(r)
	} else {
		r.writeText(s.Out)
	}
	// The workers hold their connections for --hold, or until interrupted.
	g.release()
	g.wait(ctx)
	if outErr != nil {
		return fmt.Errorf("writing the report: %w", outErr)
	}
	if r.Interrupted || r.Established == 0 {
		return exitCode(exitFailure)
	}
	return nil
}

// sinkReport is what the sink prints when it ends.
type sinkReport struct {
	Listen   string         `json:"listen"`
	Procs    int            `json:"procs"`
	Accepted int            `json:"accepted"`
	PerProc  []int          `json:"per_proc"`
	Errors   map[string]int `json:"errors,omitempty"`
}

func runSink(ctx context.Context, o loadOptions, s Streams) error {
	ap, err := netip.ParseAddrPort(o.Listen)
	if err != nil {
		return usageError("load: --listen %q: want ADDR:PORT ([ADDR]:PORT for IPv6)", o.Listen)
	}
	switch {
	case o.Hold <= 0:
		return usageError("load: the sink needs --hold, how long to run (e.g. --hold 60s)")
	case o.Procs < 1 || o.Procs > 64:
		return usageError("load: --procs must be 1-64, got %d", o.Procs)
	case o.To != "" || o.From != "":
		return usageError("load: --listen runs the sink; it takes no --to or --from")
	}
	network := "tcp6"
	if ap.Addr().Is4() {
		network = "tcp4"
	}
	group, err := dial.ListenGroup(ctx, network, ap.String(), o.Procs)
	if err != nil {
		return err
	}
	files := make([]*os.File, len(group))
	for i, l := range group {
		files[i], err = l.(*net.TCPListener).File()
		if err != nil {
			break
		}
	}
	addr := group[0].Addr().String()
	for _, l := range group {
		l.Close()
	}
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	if err != nil {
		return fmt.Errorf("load: listener descriptor: %w", err)
	}
	specs := make([]workerSpec, o.Procs)
	for i := range specs {
		specs[i] = workerSpec{Sink: true, Hold: o.Hold}
	}
	g, err := startWorkers(specs, files, s.Err)
	if err != nil {
		return err
	}
	defer g.stop()
	for _, f := range files { // the workers hold the listeners now
		f.Close()
	}
	files = nil
	fmt.Fprintf(s.Err, "tuple load: sink listening on %s with %d processes (SO_REUSEPORT) for %s\n", addr, o.Procs, o.Hold)
	results := g.collect(ctx, progressLine(s.Err, "accepted", 0))
	g.wait(ctx)
	r := sinkReport{Listen: addr, Procs: o.Procs, Errors: map[string]int{}}
	for _, m := range results {
		r.Accepted += m.Established
		r.PerProc = append(r.PerProc, m.Established)
		for k, v := range m.Errors {
			r.Errors[k] += v
		}
	}
	if o.JSON {
		return json.NewEncoder(s.Out).Encode(r)
	}
	_, err = fmt.Fprintf(s.Out, "sink %s: %d connections accepted and held by %d processes %v\n", addr, r.Accepted, o.Procs, r.PerProc)
	return err
}

// workerGroup is the running worker processes of one tuple load.
type workerGroup struct {
	cmds   []*exec.Cmd
	stdins []io.WriteCloser
	msgs   chan indexedMsg
	done   chan struct{} // closed when every worker's output has ended
}

type indexedMsg struct {
	worker int
	msg    workerMsg
}

// startWorkers starts one worker per spec; files[i], when given, becomes
// worker i's descriptor 3.
func startWorkers(specs []workerSpec, files []*os.File, stderr io.Writer) (*workerGroup, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("load: find own binary to start workers: %w", err)
	}
	g := &workerGroup{msgs: make(chan indexedMsg, 64), done: make(chan struct{})}
	var readers sync.WaitGroup
	for i, spec := range specs {
		arg, _ := json.Marshal(spec)
		cmd := exec.Command(self, "load-worker", string(arg))
		cmd.Stderr = stderr
		cmd.SysProcAttr = workerProcAttr()
		if files != nil {
			cmd.ExtraFiles = []*os.File{files[i]}
		}
		stdin, err1 := cmd.StdinPipe()
		stdout, err2 := cmd.StdoutPipe()
		if err := firstErr(err1, err2, cmd.Start()); err != nil {
			g.stop()
			return nil, fmt.Errorf("load: start worker %d: %w", i, err)
		}
		g.cmds = append(g.cmds, cmd)
		g.stdins = append(g.stdins, stdin)
		readers.Add(1)
		go func() {
			defer readers.Done()
			sc := bufio.NewScanner(stdout)
			sc.Buffer(nil, 16<<20) // a result carries every latency sample
			for sc.Scan() {
				var m workerMsg
				if json.Unmarshal(sc.Bytes(), &m) == nil {
					g.msgs <- indexedMsg{i, m}
				}
			}
			io.Copy(io.Discard, stdout)
			g.msgs <- indexedMsg{i, workerMsg{Type: "exit"}} // its output ended
		}()
	}
	go func() { readers.Wait(); close(g.done) }()
	return g, nil
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// collect gathers each worker's result, showing progress, until every
// worker has reported or ended; when ctx is done it asks the workers to stop
// and keeps the results they still send.
func (g *workerGroup) collect(ctx context.Context, show func(total int)) []workerMsg {
	latest := make([]int, len(g.cmds))
	results := make([]*workerMsg, len(g.cmds))
	got := 0
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	defer show(-1)
	stopped := false
	finished := make([]bool, len(g.cmds))
	for got < len(g.cmds) {
		select {
		case m := <-g.msgs:
			if finished[m.worker] {
				continue
			}
			switch m.msg.Type {
			case "result":
				results[m.worker] = &m.msg
				finished[m.worker] = true
				got++
			case "exit": // ended without a result; its error went to stderr
				finished[m.worker] = true
				got++
			default:
				latest[m.worker] = m.msg.Established
			}
		case <-tick.C:
			total := 0
			for _, n := range latest {
				total += n
			}
			show(total)
		case <-ctx.Done():
			if !stopped {
				g.signal()
				stopped = true
			}
		}
	}
	var out []workerMsg
	for _, r := range results {
		if r != nil {
			out = append(out, *r)
		}
	}
	return out
}

// release tells every worker that all have opened their connections, so
// their --hold starts.
func (g *workerGroup) release() {
	for _, in := range g.stdins {
		io.WriteString(in, "hold\n")
	}
}

// signal asks every worker to stop: SIGTERM, and stdin closed.
func (g *workerGroup) signal() {
	for i, c := range g.cmds {
		c.Process.Signal(syscall.SIGTERM)
		g.stdins[i].Close()
	}
}

// wait lets the workers finish on their own (their hold time), stopping them
// if ctx ends first; it returns when all have exited.
func (g *workerGroup) wait(ctx context.Context) {
	drained := make(chan struct{})
	go func() { // keep reading so no worker blocks on a full pipe
		for {
			select {
			case <-g.msgs:
			case <-g.done:
				close(drained)
				return
			}
		}
	}()
	select {
	case <-drained:
	case <-ctx.Done():
		g.signal()
		<-drained
	}
	g.stop()
}

// stop ends the workers (a no-op for those that already exited) and reaps
// them. A worker that does not stop on SIGTERM within 5s is killed.
func (g *workerGroup) stop() {
	for i, c := range g.cmds {
		g.stdins[i].Close()
		exited := make(chan struct{})
		go func() {
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				c.Process.Kill()
			}
		}()
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
		close(exited)
	}
	g.cmds, g.stdins = nil, nil
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
			fmt.Fprint(f, "\r\033[K")
			return
		}
		if want > 0 {
			fmt.Fprintf(f, "\rtuple load: %d/%d %s", n, want, what)
		} else {
			fmt.Fprintf(f, "\rtuple load: %d %s", n, what)
		}
	}
}
