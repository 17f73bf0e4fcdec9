package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/ports"
	"github.com/tuple-net/tuple/rules"
)

// portsOptions are the flags of `tuple ports`.
type portsOptions struct {
	JSON      bool
	Top       int
	HogShare  float64 // percent
	PortRange string  // the new socket's IP_LOCAL_PORT_RANGE, "" for none
	ProcRoot  string
	Owners    bool   // find the processes holding each socket (per-process table)
	Options   bool   // read live socket options (IP_BIND_ADDRESS_NO_PORT tells connect-picked ports)
	NAT       bool   // the source-NAT budgets from nftables and conntrack instead of the socket table
	Netns     string // --netns: "" for this namespace

	// read returns the socket table and host facts; tests replace it.
	read func(ctx context.Context, o portsOptions) (*ports.Table, rules.Host, error)
}

func newPortsCmd(s Streams) *cobra.Command {
	o := portsOptions{read: readPortsInputs}
	cmd := &cobra.Command{
		Use:   "ports",
		Short: "Show the ephemeral-port budget: free ports per destination, bind(0), hogs per uid",
		Long: `tuple ports reads the TCP socket table and reports, for each (source, destination)
in use, how many ephemeral ports a new connect() can still take, how many a bind(0)
can take, how many sockets are in TIME_WAIT, and which uids and processes hold ports
(bound without connecting is the quiet way to starve everyone else).

Where the table cannot tell whether a connected socket's port came from bind() or
connect(), free counts are shown as a range MIN..MAX.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return runPorts(cmd.Context(), o, s)
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&o.JSON, "json", false, "print the report as JSON")
	f.IntVar(&o.Top, "top", 10, "destinations, uids and processes to list")
	f.Float64Var(&o.HogShare, "hog-share", 50, "warn when one uid holds more than this percentage of the ephemeral range")
	f.StringVar(&o.PortRange, "port-range", "", "budget for a socket with IP_LOCAL_PORT_RANGE `LO-HI`")
	f.StringVar(&o.ProcRoot, "proc", "/proc", "procfs mount to read sysctls and owners from")
	f.BoolVar(&o.Owners, "owners", true, "find the processes holding each socket (scans every /proc/PID/fd; --owners=false skips the per-process table)")
	addNetnsFlag(f, &o.Netns, "count ports")
	f.BoolVar(&o.NAT, "nat", false, "show the source-NAT (masquerade/snat) port budget per NAT address and destination, from nftables and conntrack")
	f.BoolVar(&o.Options, "options", false, "read each socket's live options: ports of sockets with IP_BIND_ADDRESS_NO_PORT count as connect-picked (slower)")
	return cmd
}

func readPortsInputs(ctx context.Context, o portsOptions) (*ports.Table, rules.Host, error) {
	host, _, err := hostmodel.ReadHost(o.ProcRoot)
	if err != nil {
		return nil, host, fmt.Errorf("reading sysctls: %w", err)
	}
	t, err := ports.Snapshot(ctx, host, o.ProcRoot, o.Owners, o.Options)
	if err != nil {
		return nil, host, fmt.Errorf("reading the socket table: %w", err)
	}
	return t, host, nil
}

func runPorts(ctx context.Context, o portsOptions, s Streams) error {
	if o.Top < 1 {
		return usageError("--top %d: want at least 1", o.Top)
	}
	if o.NAT {
		return runPortsNAT(ctx, o, s)
	}
	if !(o.HogShare > 0 && o.HogShare <= 100) { // NaN fails both
		return usageError("--hog-share %g: want a percentage above 0 and at most 100", o.HogShare)
	}
	var opt ports.Options
	opt.HogShare = o.HogShare / 100
	if o.PortRange != "" {
		r, err := inet.ParsePortRange(o.PortRange)
		if err != nil {
			return usageError("--port-range %q: %v", o.PortRange, err)
		}
		opt.SocketRange = inet.PortRange{Lo: r.Lo, Hi: r.Hi}
	}
	if o.Netns != "" {
		return runPortsNamespaces(ctx, o, s, opt)
	}
	defer batchGC(o.ProcRoot)()
	t, host, err := o.read(ctx, o)
	if err != nil {
		return err
	}
	if t.Sockets != nil {
		tableNotes(s, t.Sockets.Notes)
	}
	t.Sockets = nil // converted into the table's sockets: not needed while the budget is made
	rep := t.Budget(host, opt)
	if o.JSON {
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(portsJSON(rep)); err != nil {
			return writeFailed(err)
		}
		return nil
	}
	if err := writePortsReport(s.Out, rep, o.Top); err != nil {
		return writeFailed(err)
	}
	return nil
}

// freeRange prints MIN..MAX, or one number when they agree.
func freeRange(lo, hi int) string {
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d..%d", lo, hi)
}

func pct(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }

func writePortsReport(out io.Writer, rep ports.Report, top int) error {
	w := bufio.NewWriter(out)
	reserved := "none"
	if len(rep.Reserved) > 0 {
		var parts []string
		for _, r := range rep.Reserved {
			if r.Lo == r.Hi {
				parts = append(parts, fmt.Sprint(r.Lo))
			} else {
				parts = append(parts, fmt.Sprintf("%d-%d", r.Lo, r.Hi))
			}
		}
		reserved = strings.Join(parts, ",")
	}
	fmt.Fprintf(w, "Ephemeral range   %d-%d (%d ports), reserved %s, %d usable\n", rep.Range.Lo, rep.Range.Hi, rep.Range.Size(), reserved, rep.Pool)
	fmt.Fprintf(w, "In use            %d ports (%s): %d picked by connect(), %d held by bind()/listen(), %d of unknown origin\n", rep.InUse, pct(ratio(rep.InUse, rep.Pool)),
		max(rep.InUse-rep.BindOwned-rep.UnknownOrigin, 0), rep.BindOwned, rep.UnknownOrigin)
	fmt.Fprintf(w, "connect() free    %s of %d for a new destination\n", freeRange(rep.ConnectFreeMin, rep.ConnectFreeMax), rep.ConnectPool)
	fmt.Fprintf(w, "bind(0) free      %d of %d\n", rep.BindFree, rep.Pool)
	fmt.Fprintf(w, "TIME_WAIT         %d sockets\n", rep.TimeWait)
	fmt.Fprintf(w, "Bound-only        %d sockets (bound, neither listening nor connected)\n", rep.BoundOnly)

	portsTable(w, "Destinations (fewest free first)", rep.Destinations, top,
		[]string{"SOURCE", "DESTINATION", "IN USE", "TIME_WAIT", "FREE", "USE"},
		func(d ports.Destination) []string {
			return []string{d.Source.String(), d.Dest.String(), fmt.Sprint(d.InUse), fmt.Sprint(d.TimeWait),
				freeRange(d.FreeMin, d.FreeMax), pct(d.Use)}
		})
	portsTable(w, "Ports held per uid", rep.UIDs, top,
		[]string{"UID", "PORTS", "SHARE", "BOUND-ONLY"},
		func(h ports.Holder) []string {
			return []string{fmt.Sprint(h.UID), fmt.Sprint(h.Ports), pct(h.Share), fmt.Sprint(h.BoundOnly)}
		})
	portsTable(w, "Ports held per process", rep.Processes, top,
		[]string{"PID", "COMM", "UID", "PORTS", "SHARE", "BOUND-ONLY"},
		func(h ports.Holder) []string {
			return []string{fmt.Sprint(h.PID), h.Comm, fmt.Sprint(h.UID), fmt.Sprint(h.Ports), pct(h.Share), fmt.Sprint(h.BoundOnly)}
		})
	if len(rep.Warnings) > 0 {
		fmt.Fprintf(w, "\nWarnings\n")
		for _, m := range rep.Warnings {
			fmt.Fprintf(w, "  ! %s\n", m)
		}
	}
	return w.Flush()
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// portsTable writes a titled, aligned table of the first top rows, saying
// how many more there are; nothing when rows is empty.
func portsTable[T any](w *bufio.Writer, title string, rows []T, top int, header []string, cells func(T) []string) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s\n", title)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "  %s\n", strings.Join(header, "\t"))
	for _, r := range rows[:min(top, len(rows))] {
		fmt.Fprintf(tw, "  %s\n", strings.Join(cells(r), "\t"))
	}
	_ = tw.Flush() // its only error would be w's, which is sticky: w.Flush reports it
	if n := len(rows) - top; n > 0 {
		fmt.Fprintf(w, "  ... and %d more\n", n)
	}
}

// jsonRange is a port range in JSON: {"first":32768,"last":60999}.
type jsonRange struct {
	First uint16 `json:"first"`
	Last  uint16 `json:"last"`
}

// portsJSON is the report with its ranges under lower-case keys (the
// library type has none of its own).
func portsJSON(rep ports.Report) any {
	out := struct {
		ports.Report
		Range    jsonRange   `json:"range"`
		Reserved []jsonRange `json:"reserved"`
	}{Report: rep, Range: jsonRange{rep.Range.Lo, rep.Range.Hi}, Reserved: []jsonRange{}}
	for _, r := range rep.Reserved {
		out.Reserved = append(out.Reserved, jsonRange{r.Lo, r.Hi})
	}
	return out
}
