package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/reusegroup"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

// whoOptions are the flags and argument of `tuple who`.
type whoOptions struct {
	addr     netip.Addr // invalid: any address
	dev      int        // the ifindex of addr's zone (fe80::1%eth0), 0 for none
	port     uint16
	json     bool
	all      bool
	procRoot string
	netns    string // --netns: "" for this namespace
	// quietIfFree prints nothing when nothing holds the port (one of many
	// namespaces).
	quietIfFree bool
}

func newWhoCmd(s Streams) *cobra.Command {
	o := &whoOptions{}
	cmd := &cobra.Command{
		Use:   "who [ADDR:]PORT",
		Short: "Show everything holding a local port: state, owners, reuse options",
		Long: `who lists every TCP and UDP socket holding local port PORT, in every state
(listening, connected, TIME_WAIT, bound-only), with its uid, the processes holding
it, its reuse options (read from the live socket; "unknown" with the reason where
they cannot be read) and the TIME_WAIT time left. With ADDR, only sockets whose
local address may overlap ADDR are shown. It ends with one line per protocol
saying whether a new socket could bind the port too, and with which options.`,
		Example: `  tuple who 8080
  tuple who 127.0.0.1:8080
  tuple who '[::1]:53' --json`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			addr, port, err := parseWhoTarget(args[0])
			if err != nil {
				return err
			}
			o.addr, o.port = addr, port
			if zone := addr.Zone(); zone != "" {
				if o.dev, err = zoneIndex(zone); err != nil {
					return usageError("who: %q: %v", args[0], err)
				}
			}
			return runWho(cmd.Context(), s, o)
		}),
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "one JSON object: every socket, the groups and the sharing verdicts")
	cmd.Flags().BoolVarP(&o.all, "all", "a", false, "list every socket, one by one, instead of groups")
	addNetnsFlag(cmd.Flags(), &o.netns, "look")
	cmd.Flags().StringVar(&o.procRoot, "proc", "/proc", "procfs mount to read")
	_ = cmd.Flags().MarkHidden("proc") // defined just above: it cannot be missing
	return cmd
}

// parseWhoTarget parses PORT, :PORT, A.B.C.D:PORT or [V6]:PORT.
func parseWhoTarget(arg string) (netip.Addr, uint16, error) {
	portText := strings.TrimPrefix(arg, ":")
	var addr netip.Addr
	if strings.ContainsAny(portText, ".:[") {
		ap, err := netip.ParseAddrPort(arg)
		if err != nil {
			return addr, 0, usageError("who: %q: want PORT, ADDR:PORT or [ADDR]:PORT", arg)
		}
		addr, portText = ap.Addr(), strconv.Itoa(int(ap.Port()))
	}
	p, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || p == 0 {
		return addr, 0, usageError("who: %q: port must be 1-65535", arg)
	}
	return addr, uint16(p), nil
}

func runWho(ctx context.Context, s Streams, o *whoOptions) error {
	if o.netns != "" {
		return runWhoNamespaces(ctx, s, o)
	}
	defer batchGC(o.procRoot)()
	// As root the kernel's own records give every socket's reuse flags,
	// v6only and device, TIME_WAIT entries' included, so no socket's
	// options are read through its owner's descriptor; otherwise they come
	// from the owners' descriptors where readable. Only the port's records
	// are read (the iterator skips the others in the kernel), beside the
	// dump, without inodes (the dump joins the owners).
	optionsFrom, indexFacts := kernelOptions(true, true, o.port)
	t, err := socktab.Snapshot(ctx, socktab.Query{LocalPort: o.port, Owners: true, Options: true, ProcRoot: o.procRoot,
		OptionsFrom: optionsFrom})
	index := indexFacts()
	if err != nil {
		return err
	}
	host, hostNotes, err := hostmodel.ReadHost(o.procRoot)
	if err != nil {
		return err
	}
	notes := append(hostNotes, t.Notes...)
	// Filtered in place: a copy of thousands of sockets (336 bytes each,
	// fresh pages) cost a sixth of who's time beside a busy port.
	socks := t.Sockets
	if o.addr.IsValid() {
		socks = slices.DeleteFunc(socks, func(sk socktab.Socket) bool {
			return !(mayOverlap(sk, o.addr.WithZone("")) && (o.dev == 0 || sk.Dev == 0 || sk.Dev == o.dev))
		})
	}
	hostmodel.ProbeIfCrowded(&host, socks)
	sit := hostmodel.FromTable(host, &socktab.Table{Sockets: socks}, index)
	verdicts := []sharing{
		shareVerdict(sit, inet.TCP, o.addr, o.port, uint32(os.Geteuid())),
		shareVerdict(sit, inet.UDP, o.addr, o.port, uint32(os.Geteuid())),
	}
	if o.quietIfFree && len(socks) == 0 {
		return nil
	}
	rgroups := reusegroup.Read(socks) // reusegroups.go renders them
	w := bufio.NewWriter(s.Out)
	if o.json {
		out := struct {
			Port    uint16       `json:"port"`
			Addr    string       `json:"addr,omitempty"`
			Source  string       `json:"source"`
			Sockets []jsonSocket `json:"sockets"`
			Groups  []whoGroup   `json:"groups"`
			Sharing []sharing    `json:"sharing"`
			Reuse   []jsonGroup  `json:"reuseport_groups"`
			Notes   []string     `json:"notes,omitempty"`
		}{Port: o.port, Source: t.Source, Sockets: make([]jsonSocket, 0, len(socks)), Groups: groupHolders(socks),
			Sharing: verdicts, Reuse: toJSONGroups(rgroups), Notes: notes}
		if o.addr.IsValid() {
			out.Addr = o.addr.String()
		}
		for i := range socks {
			out.Sockets = append(out.Sockets, toJSONSocket(&socks[i]))
		}
		if err := json.NewEncoder(w).Encode(out); err != nil {
			return err
		}
		return w.Flush()
	}
	target := strconv.Itoa(int(o.port))
	if o.addr.IsValid() {
		target = netip.AddrPortFrom(o.addr, o.port).String()
	}
	// The verdicts first: they answer the question.
	if len(socks) == 0 {
		fmt.Fprintf(w, "nothing holds port %s\n", target)
	}
	for _, v := range verdicts {
		fmt.Fprintf(w, "%s port %s: %s\n", v.Proto, target, v.Text)
	}
	queue := acceptQueues(socks)
	if o.all {
		for i := range socks {
			w.Write(appendHolder(nil, 0, &socks[i], queue))
		}
	} else if len(socks) > 0 {
		groups := groupHolders(socks)
		fmt.Fprintf(w, "%s", hostmodel.Count(len(socks), "socket"))
		if len(groups) > 1 {
			fmt.Fprintf(w, " in %d groups", len(groups))
		}
		fmt.Fprintln(w, ":")
		for i, g := range groups {
			if i == maxWhoGroups {
				fmt.Fprintf(w, "... %d more groups (--all lists every socket, --json has them all)\n", len(groups)-i)
				break
			}
			w.Write(appendHolder(nil, g.Count, &socks[g.First], queue))
		}
	}
	w.Write(appendGroups(nil, rgroups))
	for _, n := range notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return w.Flush()
}

// acceptQueues returns whether a socket of socks waits in the accept queue
// of a listener among socks, and that listener's address: a TCP
// connection with no file (no process has accepted it) on a listener's
// port and address.
func acceptQueues(socks []socktab.Socket) func(*socktab.Socket) (netip.AddrPort, bool) {
	var listeners []netip.AddrPort
	for i := range socks {
		if s := &socks[i]; s.Proto == inet.TCP && s.State == socktab.Listen {
			listeners = append(listeners, s.Local)
		}
	}
	return func(s *socktab.Socket) (netip.AddrPort, bool) {
		if s.Proto != inet.TCP || s.Inode != 0 || (s.State != socktab.Established && s.State != socktab.CloseWait) {
			return netip.AddrPort{}, false
		}
		for _, l := range listeners {
			if l.Port() == s.Local.Port() && (l.Addr().IsUnspecified() || l.Addr().Unmap() == s.Local.Addr().Unmap()) {
				return l, true
			}
		}
		return netip.AddrPort{}, false
	}
}

// maxWhoGroups keeps who's default output within a screen (3 lines a group).
const maxWhoGroups = 10

// whoGroup is holders a person tells apart only by their peers.
type whoGroup struct {
	Count int    `json:"count"`
	Text  string `json:"text"`
	First int    `json:"first"` // index in sockets of the first member
}

// groupHolders folds sockets with the same protocol, state, local address,
// uid, options and owners into groups, in order of first appearance.
func groupHolders(socks []socktab.Socket) []whoGroup {
	groups := []whoGroup{}
	index := map[string]int{}
	for i := range socks {
		sk := &socks[i]
		var key []byte
		key = append(key, sk.Proto.String()...)
		key = append(key, ' ')
		key = append(key, stateLabel(sk)...)
		key = append(key, ' ')
		key = appendAddrPort(key, sk.Local)
		key = strconv.AppendUint(append(key, ' '), uint64(sk.UID), 10)
		key = appendOptions(append(key, ' '), &sk.Options)
		for _, w := range sk.Owners {
			key = strconv.AppendInt(append(key, ','), int64(w.PID), 10)
		}
		k := string(key)
		gi, ok := index[k]
		if !ok {
			gi = len(groups)
			index[k] = gi
			groups = append(groups, whoGroup{Text: k, First: i})
		}
		groups[gi].Count++
	}
	return groups
}

// appendHolder appends one socket (n 0) or a group of n like it, in three
// lines: the socket, its options, its processes.
func appendHolder(line []byte, n int, sk *socktab.Socket, queue func(*socktab.Socket) (netip.AddrPort, bool)) []byte {
	if n > 0 {
		line = append(line, hostmodel.Thousands(n)...)
		line = append(line, " x "...)
	}
	line = append(line, sk.Proto.String()...)
	line = append(line, ' ')
	line = append(line, stateLabel(sk)...)
	line = append(line, ' ')
	line = appendAddrPort(line, sk.Local)
	line = append(line, " -> "...)
	if n > 1 && sk.Remote.Port() != 0 {
		line = append(line, "(peers vary)"...)
	} else {
		line = appendAddrPort(line, sk.Remote)
	}
	line = append(line, " uid="...)
	line = strconv.AppendUint(line, uint64(sk.UID), 10)
	if sk.State == socktab.TimeWait && n <= 1 {
		line = append(line, " time-left="...)
		line = append(line, formatDuration(sk.TimeLeft)...)
	}
	line = append(line, "\n    options: "...)
	line = appendOptions(line, &sk.Options)
	line = append(line, "\n    processes: "...)
	if len(sk.Owners) == 0 {
		line = append(line, "none"...)
		if l, ok := queue(sk); ok {
			line = append(line, " yet (not accepted: in the accept queue of the listener on "...)
			line = appendAddrPort(line, l)
			line = append(line, ')')
		} else if sk.Inode == 0 {
			line = append(line, " (held by the kernel)"...)
		}
	}
	if n > 1 {
		// The members' descriptors differ; their processes do not.
		for i, w := range sk.Owners {
			if i > 0 {
				line = append(line, ',')
			}
			line = append(line, w.Comm...)
			line = append(line, "(pid="...)
			line = strconv.AppendInt(line, int64(w.PID), 10)
			line = append(line, ')')
		}
	} else {
		line = appendOwners(line, sk.Owners)
	}
	return append(line, '\n')
}

// mayOverlap reports whether a socket's local address may overlap addr in
// the kernel's sense (equal, or either a wildcard of a family that covers
// the other). When v6only is not known it assumes the overlap: showing one
// socket too many is better than hiding a holder.
func mayOverlap(sk socktab.Socket, addr netip.Addr) bool {
	sa := sk.Local.Addr()
	if sa.Is4In6() {
		sa = sa.Unmap()
	}
	if addr.Is4In6() {
		addr = addr.Unmap()
	}
	v6only := sk.V6Only
	if sk.Options.V6Only.Known {
		v6only = sk.Options.V6Only
	}
	switch {
	case sa.Is4() && addr.Is4():
		return sa == addr || sa.IsUnspecified() || addr.IsUnspecified()
	case sa.Is6() && addr.Is6():
		return sa == addr || sa.IsUnspecified() || addr.IsUnspecified()
	case sa.Is6() && addr.Is4(): // a v4 address against an IPv6 socket
		return (sa.IsUnspecified() || addr.IsUnspecified()) && !(v6only.Known && v6only.Value)
	default: // an IPv4 socket against a v6 address: only :: (dual-stack) covers it
		return addr.IsUnspecified()
	}
}

// sharing is the verdict on whether a new socket could bind a port.
type sharing struct {
	Proto string `json:"proto"`
	// Verdict: "free", "reuseport", "reuseaddr", "reuseport-or-reuseaddr",
	// "none" or "unknown".
	Verdict string `json:"verdict"`
	UID     *int64 `json:"uid,omitempty"` // the uid a SO_REUSEPORT sharer needs
	Text    string `json:"text"`
}

// shareVerdict says whether a new socket could bind port too, and with
// which options, by asking the rules model (the same predictions `tuple
// why` makes): a bind on addr (the wildcard when invalid) without options,
// with SO_REUSEADDR, and with SO_REUSEPORT as the holders' uid. When the
// holders' reuse options are unread and their values change the answer,
// the verdict is "unknown" and the text names the alternatives.
func shareVerdict(sit *hostmodel.Situation, proto inet.Proto, addr netip.Addr, port uint16, self uint32) sharing {
	v := sharing{Proto: proto.String()}
	holders, uid := 0, int64(-1)
	var unknown rules.Fact
	ipv6 := false
	for _, e := range sit.Entries {
		s := e.Socket
		if s.Proto != proto || s.Local.Port() != port {
			continue
		}
		holders++
		unknown |= s.Unknown & (rules.FactReuseAddr | rules.FactReusePort)
		ipv6 = ipv6 || s.Family == inet.IPv6
		if uid < 0 && s.State != rules.TimeWait {
			uid = int64(s.UID)
		}
	}
	if holders == 0 {
		v.Verdict, v.Text = "free", "nothing holds it; any socket can bind it"
		return v
	}
	if !addr.IsValid() {
		addr = netip.IPv4Unspecified()
		if ipv6 {
			addr = netip.IPv6Unspecified()
		}
	}
	rpUID := uint32(self)
	if uid >= 0 {
		rpUID = uint32(uid)
	}
	verdictIn := func(w rules.World) string {
		// One model of the world for the four binds; Verdict, not
		// Predict: only whether each bind works is needed, not every
		// holder that blocks it, worded.
		m := rules.NewModel(w)
		ok := func(ra, rp bool) bool {
			s := rules.Socket{ID: "new socket", Proto: proto, Family: inet.IPv4, State: rules.Unbound,
				ReuseAddr: ra, ReusePort: rp, UID: self, CanBindPrivileged: true}
			if addr.Is6() {
				s.Family, s.V6OnlyDefault = inet.IPv6, true
			}
			if rp {
				s.UID = rpUID
			}
			return m.Verdict(s, rules.Op{Kind: rules.OpBind, Addr: netip.AddrPortFrom(addr, port)}).OK()
		}
		switch ra, rp := ok(true, false), ok(false, true); {
		case ok(false, false):
			return "free"
		case ra && rp:
			return "reuseport-or-reuseaddr"
		case rp:
			return "reuseport"
		case ra:
			return "reuseaddr"
		case ok(true, true):
			return "reuseport-and-reuseaddr"
		}
		return "none"
	}
	v.Verdict = verdictIn(sit.World())
	if unknown != 0 {
		// Each value the unread options may have: if they disagree, say so.
		var alts []string
		seen := map[string]bool{}
		for _, ra := range []bool{false, true} {
			for _, rp := range []bool{false, true} {
				if (unknown&rules.FactReuseAddr == 0 && ra) || (unknown&rules.FactReusePort == 0 && rp) {
					continue
				}
				verdict := verdictIn(sit.Supposing(ra, rp))
				if !seen[verdict] {
					seen[verdict] = true
					alts = append(alts, fmt.Sprintf("%s: %s", supposed(unknown, ra, rp), verdictText(verdict, rpUID)))
				}
			}
		}
		if len(seen) > 1 {
			v.Verdict = "unknown"
			v.Text = "cannot tell: the holders' reuse options are unread (" + sit.UnknownReason(proto, port) + "); " +
				strings.Join(alts, "; ") + "; run as root to tell"
			return v
		}
	}
	if proto == inet.UDP {
		// bind() stops at the first overlapping socket on the port's
		// chain, whose order across the two families no table shows.
		if v4Last, v6Last, ok := sit.UDPFamilyOrders(port); ok {
			if a, b := verdictIn(v4Last), verdictIn(v6Last); a != b {
				v.Verdict = "unknown"
				v.Text = fmt.Sprintf("cannot tell: bind() stops at the first overlapping socket, and which of the port's IPv4 and IPv6 sockets bound last no socket table shows; "+
					"if the IPv4 ones did, %s; if the IPv6 ones did, %s", verdictText(a, rpUID), verdictText(b, rpUID))
				return v
			}
		}
	}
	if v.Verdict == "reuseport" || v.Verdict == "reuseport-or-reuseaddr" || v.Verdict == "reuseport-and-reuseaddr" {
		u := int64(rpUID)
		v.UID = &u
	}
	v.Text = verdictText(v.Verdict, rpUID)
	return v
}

// supposed words one value of the unread options.
func supposed(unknown rules.Fact, ra, rp bool) string {
	var parts []string
	if unknown&rules.FactReuseAddr != 0 {
		parts = append(parts, "SO_REUSEADDR "+onOff(ra))
	}
	if unknown&rules.FactReusePort != 0 {
		parts = append(parts, "SO_REUSEPORT "+onOff(rp))
	}
	return "if they have " + strings.Join(parts, " and ")
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// verdictText words a verdict.
func verdictText(verdict string, uid uint32) string {
	switch verdict {
	case "free":
		return "a new socket can bind it without reuse options (no holder overlaps)"
	case "reuseport-or-reuseaddr":
		return fmt.Sprintf("a new socket with SO_REUSEADDR, or with SO_REUSEPORT as uid %d, can share it", uid)
	case "reuseport":
		return fmt.Sprintf("a new socket with SO_REUSEPORT as uid %d can share it", uid)
	case "reuseaddr":
		return "a new socket with SO_REUSEADDR can bind it"
	case "reuseport-and-reuseaddr":
		return fmt.Sprintf("a new socket with both SO_REUSEADDR and SO_REUSEPORT as uid %d can share it", uid)
	}
	return "no new socket can bind this port on an overlapping address; only a non-overlapping local address (or another device) works"
}
