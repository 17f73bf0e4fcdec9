package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tuple-net/tuple/reusegroup"
	"github.com/tuple-net/tuple/socktab"
)

// whoOptions are the flags and argument of `tuple who`.
type whoOptions struct {
	addr     netip.Addr // invalid: any address
	port     uint16
	json     bool
	procRoot string
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
			return runWho(cmd.Context(), s, o)
		}),
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "one JSON object: the sockets and the sharing verdicts")
	cmd.Flags().StringVar(&o.procRoot, "proc", "/proc", "procfs mount to read")
	cmd.Flags().MarkHidden("proc")
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
	defer batchGC()()
	if ctx == nil {
		ctx = context.Background()
	}
	t, err := socktab.Snapshot(ctx, socktab.Query{LocalPort: o.port, Owners: true, Options: true, ProcRoot: o.procRoot})
	if err != nil {
		return err
	}
	var socks []socktab.Socket
	for _, sk := range t.Sockets {
		if !o.addr.IsValid() || mayOverlap(sk, o.addr) {
			socks = append(socks, sk)
		}
	}
	verdicts := []sharing{shareVerdict(socktab.TCP, socks), shareVerdict(socktab.UDP, socks)}
	groups := reusegroup.Read(socks) // reusegroups.go renders them
	w := bufio.NewWriter(s.Out)
	if o.json {
		out := struct {
			Port    uint16       `json:"port"`
			Addr    string       `json:"addr,omitempty"`
			Source  string       `json:"source"`
			Sockets []jsonSocket `json:"sockets"`
			Sharing []sharing    `json:"sharing"`
			Groups  []jsonGroup  `json:"reuseport_groups"`
			Notes   []string     `json:"notes,omitempty"`
		}{Port: o.port, Source: t.Source, Sockets: make([]jsonSocket, 0, len(socks)), Sharing: verdicts,
			Groups: toJSONGroups(groups), Notes: t.Notes}
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
	if len(socks) == 0 {
		fmt.Fprintf(w, "nothing holds port %s\n", target)
	}
	var line []byte
	for i := range socks {
		sk := &socks[i]
		line = line[:0]
		line = append(line, sk.Proto.String()...)
		line = append(line, ' ')
		line = append(line, stateLabel(sk)...)
		line = append(line, ' ')
		line = appendAddrPort(line, sk.Local)
		line = append(line, " -> "...)
		line = appendAddrPort(line, sk.Remote)
		line = append(line, " uid="...)
		line = strconv.AppendUint(line, uint64(sk.UID), 10)
		if sk.State == socktab.TimeWait {
			line = append(line, " time-left="...)
			line = append(line, formatDuration(sk.TimeLeft)...)
		}
		line = append(line, "\n    options: "...)
		line = appendOptions(line, &sk.Options)
		line = append(line, "\n    processes: "...)
		if len(sk.Owners) == 0 {
			line = append(line, "none"...)
			if sk.Inode == 0 {
				line = append(line, " (held by the kernel)"...)
			}
		}
		line = appendOwners(line, sk.Owners)
		line = append(line, '\n')
		w.Write(line)
	}
	w.Write(appendGroups(nil, groups))
	for _, v := range verdicts {
		fmt.Fprintf(w, "%s port %s: %s\n", v.Proto, target, v.Text)
	}
	for _, n := range t.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return w.Flush()
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

// shareVerdict applies the bind rules of kernel-rules.md to the holders of
// one port in one protocol, for a new socket on an overlapping address and
// the same device. It is deliberately small: the full model is rules.Predict.
//
// TCP: an owner blocks a new socket unless both have SO_REUSEADDR and the
// owner does not listen, or both have SO_REUSEPORT and the same uid (any uid
// against TIME_WAIT). UDP: the same without the listen and TIME_WAIT cases.
// Request sockets own nothing.
func shareVerdict(proto socktab.Proto, socks []socktab.Socket) sharing {
	v := sharing{Proto: proto.String()}
	var (
		n                   int
		allRA, allRP              = true, true
		uid                 int64 = -1
		uidsDiffer, unknown bool
		unknownReason       string
		listenerNoRP        *socktab.Socket
		definiteBlocker     *socktab.Socket
		allConnected        = true // every holder is a TCP connection (no listener, no bound-only)
	)
	for i := range socks {
		sk := &socks[i]
		if sk.Proto != proto || sk.State == socktab.SynRecv || sk.State == socktab.NewSynRecv {
			continue
		}
		n++
		if proto != socktab.TCP || sk.State == socktab.Listen || sk.State == socktab.BoundInactive || sk.State == socktab.Close {
			allConnected = false
		}
		ra, rp := sk.Options.ReuseAddr, sk.Options.ReusePort
		if !ra.Known || !rp.Known {
			unknown = true
			if unknownReason == "" {
				unknownReason = fmt.Sprintf("%s %s: %s", stateLabel(sk), sk.Local, firstReason(ra, rp))
			}
		}
		listens := proto == socktab.TCP && sk.State == socktab.Listen
		raOK := ra.Known && ra.Value && !listens
		rpOK := rp.Known && rp.Value
		if !raOK {
			allRA = false
		}
		if !rpOK {
			allRP = false
		}
		if rpOK && !(proto == socktab.TCP && sk.State == socktab.TimeWait) {
			if uid >= 0 && uid != int64(sk.UID) {
				uidsDiffer = true
			}
			uid = int64(sk.UID)
		}
		// Known to block every new socket whatever its options.
		raBlocks := (ra.Known && !ra.Value) || listens
		if rp.Known && !rp.Value && raBlocks && definiteBlocker == nil {
			definiteBlocker = sk
			if listens {
				listenerNoRP = sk
			}
		}
	}
	switch {
	case n == 0:
		v.Verdict, v.Text = "free", "nothing holds it; any socket can bind it"
	case listenerNoRP != nil:
		v.Verdict = "none"
		v.Text = fmt.Sprintf("no new socket can bind this port on an overlapping address: the listener on %s has no SO_REUSEPORT; only a non-overlapping local address (or another device) works", listenerNoRP.Local)
	case definiteBlocker != nil:
		v.Verdict = "none"
		v.Text = fmt.Sprintf("no new socket can bind this port on an overlapping address: %s %s has neither SO_REUSEADDR nor SO_REUSEPORT", stateLabel(definiteBlocker), definiteBlocker.Local)
	case unknown:
		v.Verdict = "unknown"
		v.Text = "cannot tell: options unknown for " + unknownReason
	case allRP && !uidsDiffer && allRA:
		v.Verdict, v.UID = "reuseport-or-reuseaddr", &uid
		v.Text = fmt.Sprintf("a new socket with SO_REUSEADDR, or with SO_REUSEPORT as uid %d, can share it", uid)
	case allRP && !uidsDiffer:
		v.Verdict = "reuseport"
		if uid >= 0 {
			v.UID = &uid
		}
		if uid < 0 {
			v.Text = "a new socket with SO_REUSEPORT can share it (its holders are TIME_WAIT sockets with SO_REUSEPORT)"
		} else {
			v.Text = fmt.Sprintf("a new socket with SO_REUSEPORT as uid %d can share it", uid)
		}
	case allRA:
		v.Verdict = "reuseaddr"
		v.Text = "a new socket with SO_REUSEADDR can bind it (every holder has SO_REUSEADDR and none listens)"
	case allRP && uidsDiffer:
		v.Verdict = "none"
		v.Text = "no new socket can bind this port on an overlapping address: its SO_REUSEPORT holders have different uids"
	default:
		v.Verdict = "none"
		v.Text = "no new socket can bind this port on an overlapping address: its holders' options leave no common way"
	}
	if v.Verdict == "none" && allConnected {
		v.Text += "; connect() without bind() can still use it as the source port towards other destinations if every holder got the port from connect()"
	}
	return v
}

func firstReason(bs ...socktab.Bool) string {
	for _, b := range bs {
		if !b.Known {
			return b.Reason
		}
	}
	return ""
}
