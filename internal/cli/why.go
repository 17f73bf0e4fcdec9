package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/sockopt"
)

// whyOptions are the new socket's options and how to report.
type whyOptions struct {
	udp        bool
	reuseAddr  bool
	reusePort  bool
	v6only     bool
	bindNoPort bool
	uid        int
	dev        string
	from       string
	mark       markFlag // SO_MARK: --mark, or the failed socket's
	json       bool
	all        bool
	procRoot   string
	netns      string // --netns: "" for this namespace
	// kernelVersion is --kernel-version: the model's kernel; empty: the
	// running one.
	kernelVersion string
}

func newWhyCmd(s Streams) *cobra.Command {
	o := &whyOptions{uid: -1}
	cmd := &cobra.Command{
		Use:   "why",
		Short: "Predict whether a bind/listen/connect would work here, name what blocks it and what would work",
		Long: `tuple why reads this host's socket table (with owners and their options), port sysctls and
local addresses, and predicts what the kernel would answer to a new socket's bind, listen or
connect. When it would fail it names each blocking socket with its owning processes, says why,
and lists the changes the model predicts would work. Exit 0: would succeed, 1: would fail.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return usageError("why: want a subcommand: bind, listen or connect")
		}),
	}
	f := cmd.PersistentFlags()
	f.BoolVarP(&o.udp, "udp", "u", false, "UDP instead of TCP")
	f.BoolVar(&o.reuseAddr, "reuseaddr", false, "the new socket sets SO_REUSEADDR")
	f.BoolVar(&o.reusePort, "reuseport", false, "the new socket sets SO_REUSEPORT")
	f.BoolVar(&o.v6only, "v6only", false, "the new IPv6 socket sets IPV6_V6ONLY")
	f.BoolVar(&o.bindNoPort, "bind-no-port", false, "the new socket sets IP_BIND_ADDRESS_NO_PORT (connect picks the port)")
	f.IntVar(&o.uid, "uid", -1, "uid the new socket is created by (default: the current effective uid)")
	f.StringVar(&o.dev, "dev", "", "the new socket is bound to this interface (SO_BINDTODEVICE)")
	f.BoolVar(&o.json, "json", false, "print one JSON object (every blocker, grouped too)")
	f.BoolVarP(&o.all, "all", "a", false, "list every blocker, one by one, instead of groups")
	addOneNetnsFlag(f, &o.netns, "predict")
	f.StringVar(&o.procRoot, "proc", "/proc", "procfs mount to read")
	f.StringVar(&o.kernelVersion, "kernel-version", "", "predict with the rules of kernel `VERSION` (e.g. 5.10, 6.1.192) instead of the running one's")
	_ = f.MarkHidden("proc")

	sub := func(use, short string, nargs int, kind rules.OpKind) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.ExactArgs(nargs),
			RunE: runE(func(cmd *cobra.Command, args []string) error {
				return runWhy(cmd.Context(), s, o, kind, args[0])
			}),
		}
	}
	bind := sub("bind ADDR:PORT", "Would bind(ADDR:PORT) work?", 1, rules.OpBind)
	listen := sub("listen ADDR:PORT", "Would bind(ADDR:PORT) and listen() work?", 1, rules.OpListen)
	connect := sub("connect [--from ADDR:PORT] ADDR:PORT", "Would connect(ADDR:PORT) work, from --from if given?", 1, rules.OpConnect)
	connect.Flags().StringVar(&o.from, "from", "", "bind this local ADDR:PORT before connecting (port 0: the kernel picks)")
	connect.Flags().Var(&o.mark, "mark", "the new socket sets firewall mark `MARK` (SO_MARK), which policy routing may match (ip rule fwmark)")
	cmd.AddCommand(bind, listen, connect)
	return cmd
}

// parseAddrPort accepts ADDR:PORT, [V6]:PORT, and :PORT or PORT (the IPv4
// wildcard, as who reads a port).
func parseAddrPort(what, arg string) (netip.AddrPort, error) {
	s := arg
	if strings.HasPrefix(s, ":") && strings.Count(s, ":") == 1 {
		s = "0.0.0.0" + s
	} else if s != "" && strings.Trim(s, "0123456789") == "" {
		s = "0.0.0.0:" + s
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		if _, aerr := netip.ParseAddr(arg); aerr == nil && strings.Contains(arg, ":") {
			// "::1:80" is an IPv6 address, not ::1 and port 80.
			return netip.AddrPort{}, usageError("%s %q: an IPv6 address takes brackets before its port, e.g. [::1]:8080", what, arg)
		}
		return netip.AddrPort{}, usageError("%s %q: want ADDR:PORT with a numeric address (or PORT), e.g. 127.0.0.1:8080, [::1]:8080 or 8080", what, arg)
	}
	return ap, nil
}

// resolveDevices names the plan's devices as the calling thread's
// namespace knows them: --dev's interface (dev), and each address's zone
// as an interface index, the form the model takes (rules.ZoneDev). An
// interface the namespace lacks is bad input.
func resolveDevices(p *hostmodel.Plan, dev string) error {
	if dev != "" {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return usageError("--dev %q: no such interface", dev)
		}
		p.Socket.Dev = ifi.Index
	}
	for i := range p.Ops {
		a := p.Ops[i].Addr
		if zone := a.Addr().Zone(); zone != "" {
			n, err := zoneIndex(zone)
			if err != nil {
				return usageError("%s address %q: %v", p.Ops[i].Kind, a.String(), err)
			}
			p.Ops[i].Addr = netip.AddrPortFrom(a.Addr().WithZone(strconv.Itoa(n)), a.Port())
		}
	}
	return nil
}

// whyPlan turns the command line into the model's plan for the new socket.
func whyPlan(o *whyOptions, kind rules.OpKind, arg string) (hostmodel.Plan, error) {
	target, err := parseAddrPort(kind.String()+" address", arg)
	if err != nil {
		return hostmodel.Plan{}, err
	}
	var from netip.AddrPort
	if kind == rules.OpConnect && o.from != "" {
		if from, err = parseAddrPort("--from", o.from); err != nil {
			return hostmodel.Plan{}, err
		}
	}
	return planFor(o, kind, target, from)
}

// planFor is the model's plan for the new socket of o's options doing kind
// on target; from is a connect's source, invalid for none.
func planFor(o *whyOptions, kind rules.OpKind, target, from netip.AddrPort) (hostmodel.Plan, error) {
	hasFrom := kind == rules.OpConnect && from.IsValid()
	if kind == rules.OpConnect && target.Port() == 0 {
		return hostmodel.Plan{}, usageError("connect address %s: port 0 cannot be connected to", target)
	}
	if kind == rules.OpConnect && target.Addr().IsUnspecified() {
		return hostmodel.Plan{}, usageError("connect address %s: want a peer address, not a wildcard", target)
	}
	if o.bindNoPort && !hasFrom {
		return hostmodel.Plan{}, usageError("--bind-no-port applies to connect --from ADDR:0")
	}
	s := rules.Socket{ID: "new socket", Proto: inet.TCP, Family: inet.IPv4, State: rules.Unbound,
		ReuseAddr: o.reuseAddr, ReusePort: o.reusePort, BindNoPort: o.bindNoPort}
	if o.udp {
		s.Proto = inet.UDP
	}
	if o.udp && kind == rules.OpListen {
		return hostmodel.Plan{}, usageError("listen: UDP sockets do not listen; use 'tuple why bind -u'")
	}
	local := target
	if hasFrom {
		local = from
	}
	if local.Addr().Is6() {
		s.Family = inet.IPv6
	}
	if hasFrom {
		switch {
		case from.Addr().Is4() && target.Addr().Is6() && !target.Addr().Is4In6():
			return hostmodel.Plan{}, usageError("--from %s is IPv4 but the peer %s is IPv6", from, target)
		case from.Addr().Is6() && target.Addr().Is4():
			target = netip.AddrPortFrom(netip.AddrFrom16(target.Addr().As16()), target.Port())
		case from.Addr().Is4() && target.Addr().Is4In6():
			target = netip.AddrPortFrom(target.Addr().Unmap(), target.Port())
		}
	}
	if o.v6only && s.Family != inet.IPv6 {
		return hostmodel.Plan{}, usageError("--v6only needs an IPv6 socket (an IPv6 address)")
	}
	s.V6Only = s.Family == inet.IPv6 && o.v6only
	// Without --v6only the socket keeps the system default
	// (net.ipv6.bindv6only), which the model reads from the host.
	s.V6OnlyDefault = s.Family == inet.IPv6 && !o.v6only
	if o.uid < -1 || o.uid > 1<<32-2 {
		return hostmodel.Plan{}, usageError("--uid %d: want a uid from 0 to 4294967294", o.uid)
	}
	if o.uid == -1 {
		s.UID = uint32(os.Geteuid())
	} else {
		s.UID = uint32(o.uid)
	}
	// uid 0 is assumed to hold CAP_NET_BIND_SERVICE; other uids not.
	s.CanBindPrivileged = s.UID == 0
	s.Mark = uint32(o.mark)
	p := hostmodel.Plan{Socket: s}
	switch kind {
	case rules.OpBind:
		p.Ops = []rules.Op{{Kind: rules.OpBind, Addr: target}}
	case rules.OpListen:
		p.Ops = []rules.Op{{Kind: rules.OpBind, Addr: target}, {Kind: rules.OpListen}}
	case rules.OpConnect:
		if hasFrom {
			p.Ops = append(p.Ops, rules.Op{Kind: rules.OpBind, Addr: from})
		}
		p.Ops = append(p.Ops, rules.Op{Kind: rules.OpConnect, Addr: target})
	}
	return p, nil
}

func runWhy(ctx context.Context, s Streams, o *whyOptions, kind rules.OpKind, arg string) error {
	// The command line is checked before the host is read.
	p, err := whyPlan(o, kind, arg)
	if err != nil {
		return err
	}
	proto := inet.TCP
	if o.udp {
		proto = inet.UDP
	}
	// The socket table, sysctls, addresses and routes are all the
	// namespace's: read and explain from a thread inside it.
	kernel, err := parseKernelVersion(o.kernelVersion)
	if err != nil {
		return err
	}
	var r *hostmodel.Report
	var zones zoneNames
	err = inNamespace("why", o.netns, o.procRoot, func() error {
		if err := resolveDevices(&p, o.dev); err != nil {
			return err
		}
		zones = interfaceZones()
		sit, err := hostmodel.Live(ctx, proto, o.procRoot)
		if err != nil {
			return fmt.Errorf("why %s: %w", kind, err)
		}
		if kernel != nil {
			sit.Host.Kernel = *kernel
		}
		if err := hostmodel.ResolveSource(&p); err != nil {
			sit.Notes = append(sit.Notes, err.Error()+"; four-tuples compared on the peer alone")
		}
		r = hostmodel.Explain(ctx, sit, p)
		return nil
	})
	if err != nil {
		return err
	}
	spell := whyFlags(p)
	var out bytes.Buffer
	if o.json {
		enc := json.NewEncoder(&out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reportJSON(r, spell)); err != nil {
			return err
		}
	} else if err := printReport(&out, proto, r, o.all, spell); err != nil {
		return err
	}
	if _, err := io.WriteString(s.Out, zones.spell(out.String())); err != nil {
		return writeFailed(err)
	}
	if r.OK() {
		return nil
	}
	return exitCode(exitFailure)
}

// maxGroups is how many blocker groups a report shows without --all, so
// it fits a screen (with the verdict, fixes and notes under 40 lines).
const maxGroups = 12

// printReport writes the report for people: the verdict on the first line,
// then the blockers grouped (all of them, one by one, with all), the fixes,
// the assumptions and notes.
func printReport(out io.Writer, proto inet.Proto, r *hostmodel.Report, all bool, spell func(hostmodel.Edit) string) error {
	w := bufio.NewWriter(out)
	switch {
	case r.OK():
		fmt.Fprintf(w, "%s %s: would succeed", proto, r.Plan)
		if r.Port != 0 {
			fmt.Fprintf(w, " (port %d)", r.Port)
		}
		fmt.Fprintln(w)
	case r.Uncertain:
		fmt.Fprintf(w, "%s %s: %s would fail with %s if the blockers' unread options are as assumed; cannot tell\n", proto, r.Plan, r.FailedOp, r.Verdict)
	default:
		fmt.Fprintf(w, "%s %s: %s would fail with %s\n", proto, r.Plan, r.FailedOp, r.Verdict)
	}
	if r.Explanation != "" {
		fmt.Fprintf(w, "why: %s\n", r.Explanation)
	}
	if all {
		printBlockers(w, r.Blockers)
	} else if len(r.Blockers) > 0 {
		printGroups(w, r)
	}
	if len(r.Fixes) > 0 {
		fmt.Fprintln(w, "what would work:")
		for _, f := range r.Fixes {
			if flags := spell(f.Edit); flags != "" {
				fmt.Fprintf(w, "  - %s: %s\n", f.Change, flags)
			} else {
				fmt.Fprintf(w, "  - %s\n", f.Change)
			}
		}
	} else if !r.OK() {
		fmt.Fprintln(w, "what would work: nothing the model could find by changing one thing")
	}
	as := r.Assumptions
	if !all {
		as = hostmodel.CollapseAssumptions(as)
	}
	for _, a := range as {
		fmt.Fprintf(w, "assumption: %s\n", a)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return w.Flush()
}

// printGroups writes the blockers folded into groups, the largest screenful
// maxGroups allows, saying how many are left out.
func printGroups(w *bufio.Writer, r *hostmodel.Report) {
	fmt.Fprintf(w, "blockers: %s", hostmodel.Count(len(r.Blockers), "socket"))
	if len(r.Groups) > 1 {
		fmt.Fprintf(w, " in %d groups", len(r.Groups))
	}
	fmt.Fprintln(w)
	lastReason := ""
	for i, g := range r.Groups {
		if i == maxGroups {
			rest := 0
			for _, g := range r.Groups[i:] {
				rest += g.Count
			}
			fmt.Fprintf(w, "  ... %s in %d more groups (--all lists every blocker, --json has them all)\n",
				hostmodel.Count(rest, "socket"), len(r.Groups)-i)
			break
		}
		fmt.Fprintf(w, "  %s\n", g.Text())
		if g.Reason != "" && g.Reason != lastReason {
			fmt.Fprintf(w, "    why: %s\n", g.Reason)
			lastReason = g.Reason
		}
	}
}

// printBlockers writes every blocker with its owner, reason and unknowns.
func printBlockers(w *bufio.Writer, bs []hostmodel.BlockerInfo) {
	for i, b := range bs {
		tuple := b.Local
		if b.Remote != "" {
			tuple += " -> " + b.Remote
		}
		fmt.Fprintf(w, "blocker %d: %s %s %s uid %d", i+1, b.Proto, tuple, b.State, b.UID)
		if len(b.Options) > 0 {
			fmt.Fprintf(w, " [%s]", strings.Join(b.Options, " "))
		} else {
			fmt.Fprint(w, " [no reuse options]")
		}
		if b.TimeLeft > 0 {
			fmt.Fprintf(w, " expires in %s", b.TimeLeft.Round(time.Second))
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  owner: %s\n", b.OwnersText())
		if b.Reason != "" {
			fmt.Fprintf(w, "  why: %s\n", b.Reason)
		}
		for _, a := range b.Assumed {
			fmt.Fprintf(w, "  unknown: %s\n", a)
		}
	}
}

// explainNetFailure explains a failed connect or listen from `tuple
// connect`/`tuple listen` (or tuple exporter's listener): the same report
// as `tuple why`, as text, and in one line for the hint, judging a new
// socket with the options the failed one had. It returns an error when the
// model does not predict the errno the kernel gave (the explanation would
// not be about this failure), or the host cannot be read before ctx ends.
// f.local is the source (or listen) address, invalid or port 0 when none
// was asked for.
func explainNetFailure(ctx context.Context, f *netFailure) (*failureExplanation, error) {
	op, local, remote := f.op, f.local, f.remote
	var errno syscall.Errno
	switch {
	case errors.As(f.err, &errno):
	case isTimeout(f.err) && op == "connect":
		// -w ended the wait; the kernel would have given up with
		// ETIMEDOUT (a full accept queue drops every SYN).
		errno = syscall.ETIMEDOUT
	default:
		return nil, fmt.Errorf("the failure carries no errno to explain")
	}
	o := whyOptions{uid: -1, udp: strings.HasPrefix(f.network, "udp"),
		reuseAddr: f.opts.ReuseAddr, reusePort: f.opts.ReusePort,
		bindNoPort: f.opts.BindAddressNoPort, v6only: f.opts.V6Only == sockopt.V6OnlyOn,
		dev: f.opts.Device, mark: markFlag(f.opts.Mark)}
	var kind rules.OpKind
	var target, from netip.AddrPort
	switch op {
	case "listen":
		kind, target = rules.OpListen, local
		if o.udp {
			kind = rules.OpBind
		}
	case "connect", "dial":
		kind, target = rules.OpConnect, remote
		if local.IsValid() && (local.Port() != 0 || !local.Addr().IsUnspecified()) {
			from = local
		}
	default:
		return nil, fmt.Errorf("the model has no %s operation", op)
	}
	if !local.IsValid() && kind != rules.OpConnect {
		return nil, fmt.Errorf("no local address to judge the %s by", op)
	}
	proto := inet.TCP
	if o.udp {
		proto = inet.UDP
	}
	sit, err := hostmodel.Live(ctx, proto, "")
	if err != nil {
		return nil, fmt.Errorf("reading this host's sockets: %w", err)
	}
	p, err := planFor(&o, kind, target, from)
	if err != nil {
		return nil, err
	}
	if err := resolveDevices(&p, o.dev); err != nil {
		return nil, err
	}
	zones := interfaceZones()
	srcErr := hostmodel.ResolveSource(&p)
	r := hostmodel.Explain(ctx, sit, p)
	if srcErr != nil {
		r.Notes = append(r.Notes, srcErr.Error()+"; four-tuples compared on the peer alone")
	}
	if r.OK() {
		return nil, fmt.Errorf("the model predicts the %s succeeds now (the socket that blocked it may be gone)", op)
	}
	if got := rules.ErrnoName(errno); r.Verdict != got {
		return nil, fmt.Errorf("the model predicts %s, not the kernel's %s", r.Verdict, got)
	}
	if call := failedSyscall(f.err); call != "" && r.FailedOp != call {
		return nil, fmt.Errorf("the model fails %s at %s, the kernel at %s", r.Verdict, r.FailedOp, call)
	}
	spell := func(e hostmodel.Edit) string { return netcatFlags(op, e) }
	if f.noFlags {
		spell = func(hostmodel.Edit) string { return "" }
	}
	var b strings.Builder
	if err := printReport(&b, proto, r, false, spell); err != nil {
		return nil, err
	}
	return &failureExplanation{brief: zones.spell(briefReport(r, spell)), full: zones.spell(b.String())}, nil
}

// briefReport is a failed plan's report in one line, for a hint: the
// largest group of blockers and why it blocks, and the first fixes.
func briefReport(r *hostmodel.Report, spell func(hostmodel.Edit) string) string {
	var b strings.Builder
	switch {
	case r.Uncertain || len(r.Groups) == 0:
		b.WriteString(r.Explanation)
	default:
		g := r.Groups[0]
		b.WriteString(g.Text())
		if n := len(r.Blockers) - g.Count; n > 0 {
			fmt.Fprintf(&b, " and %s more", hostmodel.Thousands(n))
		}
		if len(r.Blockers) == 1 {
			b.WriteString(" blocks it")
		} else {
			b.WriteString(" block it")
		}
		if g.Reason != "" {
			b.WriteString(": " + g.Reason)
		}
	}
	const maxFixes = 2
	for i, fix := range r.Fixes[:min(len(r.Fixes), maxFixes)] {
		if i == 0 {
			b.WriteString("; what would work: ")
		} else {
			b.WriteString(", or ")
		}
		b.WriteString(fix.Change)
		if flags := spell(fix.Edit); flags != "" {
			b.WriteString(": `" + flags + "`")
		}
	}
	return b.String()
}

// netcatFlags spells a fix's change to the new socket in the flags and
// arguments of `tuple connect` (-s ADDR -p PORT) or `tuple listen` (ADDR
// PORT), so a failed command's report says what to type.
func netcatFlags(op string, e hostmodel.Edit) string {
	var out []string
	if e.Local.IsValid() {
		a, port := e.Local.Addr().String(), strconv.Itoa(int(e.Local.Port()))
		switch {
		case op == "listen":
			out = append(out, a, port)
		default:
			if !e.Local.Addr().IsUnspecified() {
				out = append(out, "-s", a)
			}
			if e.Local.Port() != 0 {
				out = append(out, "-p", port)
			}
		}
	}
	if e.BindNoPort {
		out = append(out, "--bind-no-port")
	}
	out = append(out, optionFlags(e.Options)...)
	if e.SetUID {
		out = append(out, fmt.Sprintf("(run as uid %d)", e.UID))
	}
	if e.NoBind {
		out = append(out, "(no -s/-p)")
	}
	return strings.Join(out, " ")
}

// whyFlags spells a fix's change in `tuple why`'s flags for plan p: a
// connect's source is --from, a bind or listen address the argument itself.
func whyFlags(p hostmodel.Plan) func(hostmodel.Edit) string {
	connect := len(p.Ops) > 0 && p.Ops[len(p.Ops)-1].Kind == rules.OpConnect
	return func(e hostmodel.Edit) string {
		var out []string
		if e.Local.IsValid() {
			if connect {
				out = append(out, "--from")
			}
			out = append(out, e.Local.String())
		}
		if e.BindNoPort {
			out = append(out, "--bind-no-port")
		}
		out = append(out, optionFlags(e.Options)...)
		if e.SetUID {
			out = append(out, "--uid", strconv.FormatUint(uint64(e.UID), 10))
		}
		if e.NoBind {
			out = append(out, "(no --from)")
		}
		return strings.Join(out, " ")
	}
}

// optionFlags spells socket options in the flags why, connect and listen
// share.
func optionFlags(ids []sockopt.ID) []string {
	var out []string
	for _, id := range ids {
		switch id {
		case sockopt.ReusePort:
			out = append(out, "--reuseport")
		case sockopt.ReuseAddr:
			out = append(out, "--reuseaddr")
		case sockopt.BindAddressNoPort:
			out = append(out, "--bind-no-port")
		default:
			out = append(out, "("+id.String()+")")
		}
	}
	return out
}

// whyFixJSON is a fix in `tuple why --json`, with its change spelled in
// why's flags.
type whyFixJSON struct {
	hostmodel.Fix
	Flags string `json:"flags,omitempty"`
}

// reportJSON is r as `tuple why --json` prints it: its fixes carry flags.
func reportJSON(r *hostmodel.Report, spell func(hostmodel.Edit) string) any {
	fixes := make([]whyFixJSON, len(r.Fixes))
	for i, f := range r.Fixes {
		fixes[i] = whyFixJSON{Fix: f, Flags: spell(f.Edit)}
	}
	return struct {
		*hostmodel.Report
		Fixes []whyFixJSON `json:"fixes"`
	}{r, fixes}
}
