package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/reusegroup"
	"github.com/tuple-net/tuple/socktab"
)

// lsOptions are the flags of `tuple ls`.
type lsOptions struct {
	tcp, udp  bool
	listening bool
	all       bool
	processes bool
	options   bool
	extended  bool
	numeric   bool
	states    []string
	sport     uint16
	dport     uint16
	uid       int64 // -1: any
	uidSet    bool  // --uid given: -1 typed is bad input, not "any"
	pidSet    bool  // --pid given (0 is not a process)
	pid       int   // 0: any
	json      bool
	ipv4      bool
	ipv6      bool
	summary   bool
	filter    []string // an ss filter expression, as words
	procRoot  string
	netns     string // --netns: "" for this namespace
}

// defaultStates is what `tuple ls` shows without -l, -a or --state: like
// ss, the connected sockets (no listeners, no unconnected UDP or bound-only
// TCP sockets, no TIME_WAIT and no request sockets).
var defaultStates = socktab.States(socktab.Established, socktab.SynSent, socktab.FinWait1,
	socktab.FinWait2, socktab.CloseWait, socktab.LastAck, socktab.Closing)

func newLsCmd(s Streams) *cobra.Command {
	o := &lsOptions{uid: -1}
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List TCP and UDP sockets, bound-only ones included, with owning processes",
		Long: `ls lists the host's TCP and UDP sockets like ss, read from the kernel with netlink
sock_diag (or /proc/net when netlink is unavailable).

Without -l, -a or --state it shows connected sockets, as ss does. -l shows
listening TCP sockets and bound, unconnected UDP sockets. -a shows every state,
including TCP sockets that are bound but neither listening nor connected (state
BOUND, Linux 6.8+), which ss 6.1 and /proc/net/tcp do not show.`,
		Example: `  tuple ls -ta                 # every TCP socket
  tuple ls --state bound -p    # bound-only TCP sockets and who holds them
  tuple ls -l --sport 8080 -o  # listeners on port 8080 with their reuse options
  tuple ls --json -p           # one JSON object per socket`,
		Args: cobra.ArbitraryArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			o.uidSet = cmd.Flags().Changed("uid")
			o.pidSet = cmd.Flags().Changed("pid")
			o.filter = args
			return runLs(cmd.Context(), s, o)
		}),
	}
	cmd.Use = "ls [flags] [FILTER]"
	cmd.Long += `

FILTER is an ss filter expression, run in the kernel like ss's: sport, dport
(= != < > <= >=), src and dst (ADDR, ADDR/BITS, ADDR:PORT, [V6]:PORT, *:PORT),
and, or, not, parentheses, and "state NAME" joined with and (ss's names and
groups: established, listening, connected, all, ...). --pid and --sport show
every state unless -l, -a, --state or a state term says otherwise.`
	cmd.Example += `
  tuple ls -tn 'sport = :8080 or dport = :8080'
  tuple ls state established '( dport = :443 or dport = :80 )'
  tuple ls -s                  # counts per protocol, family and state`
	f := cmd.Flags()
	f.BoolVarP(&o.tcp, "tcp", "t", false, "TCP sockets (default: TCP and UDP)")
	f.BoolVarP(&o.udp, "udp", "u", false, "UDP sockets (default: TCP and UDP)")
	f.BoolVarP(&o.listening, "listening", "l", false, "listening TCP and unconnected bound UDP sockets only")
	f.BoolVarP(&o.all, "all", "a", false, "every state, bound-only TCP sockets included")
	f.BoolVarP(&o.processes, "processes", "p", false, "show the processes holding each socket")
	f.BoolVarP(&o.options, "options", "o", false, "show live reuse options (read with pidfd_getfd; implies -p)")
	f.BoolVarP(&o.extended, "extended", "e", false, "show uid and inode")
	f.BoolVarP(&o.numeric, "numeric", "n", true, "numeric addresses and ports (always; names are never resolved)")
	f.StringArrayVar(&o.states, "state", nil, "only this state (repeatable): established, syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, close, close-wait, last-ack, listen, closing, new-syn-recv, bound, unconn")
	f.Uint16Var(&o.sport, "sport", 0, "only sockets with this local port (filtered in the kernel)")
	f.Uint16Var(&o.dport, "dport", 0, "only sockets with this remote port (filtered in the kernel)")
	f.Int64Var(&o.uid, "uid", -1, "only sockets of this uid")
	f.IntVar(&o.pid, "pid", 0, "only sockets held by this process (implies -p)")
	f.BoolVar(&o.json, "json", false, "one JSON object per socket (fields in docs/commands.md)")
	f.BoolVarP(&o.ipv4, "ipv4", "4", false, "IPv4 sockets only")
	f.BoolVarP(&o.ipv6, "ipv6", "6", false, "IPv6 sockets only")
	f.BoolVarP(&o.summary, "summary", "s", false, "counts per protocol, family and state, like ss -s")
	addNetnsFlag(f, &o.netns, "list sockets")
	f.StringVar(&o.procRoot, "proc", "/proc", "procfs mount to read")
	_ = f.MarkHidden("proc") // defined just above: it cannot be missing
	return cmd
}

// query turns the flags into a socktab query.
func (o *lsOptions) query() (socktab.Query, error) {
	q := socktab.Query{TCP: o.tcp, UDP: o.udp, LocalPort: o.sport, RemotePort: o.dport,
		Owners: o.processes || o.pid != 0, Options: o.options, ProcRoot: o.procRoot}
	if o.uidSet && (o.uid < 0 || o.uid > 1<<32-1) {
		return q, usageError("ls: --uid %d: want 0-4294967295", o.uid)
	}
	if o.pid < 0 || (o.pidSet && o.pid == 0) {
		return q, usageError("ls: --pid %d: want a process id", o.pid)
	}
	for _, name := range o.states {
		st, err := socktab.ParseState(name)
		if err != nil {
			return q, usageError("ls: --state: %v", err)
		}
		q.States |= socktab.States(st)
	}
	if o.listening {
		q.States |= socktab.States(socktab.Listen, socktab.Close)
	}
	if o.all {
		q.States = socktab.AllStates
	}
	switch {
	case o.summary && o.json:
		return q, usageError("ls: -s and --json exclude each other (the summary is text)")
	case o.ipv4 && o.ipv6:
		return q, usageError("ls: -4 and -6 exclude each other")
	case o.ipv4:
		q.Family = inet.IPv4
	case o.ipv6:
		q.Family = inet.IPv6
	}
	if len(o.filter) > 0 {
		f, err := socktab.ParseFilter(o.filter)
		if err != nil {
			return q, usageError("ls: %v", err)
		}
		q.Filter = f
	}
	// A process's or a port's sockets, a state named in the filter and a
	// summary mean every state unless the flags chose states.
	if q.States == 0 && (o.pid != 0 || o.sport != 0 || o.summary || (q.Filter != nil && q.Filter.States != 0)) {
		q.States = socktab.AllStates
	}
	if q.States == 0 {
		q.States = defaultStates
	}
	if o.netns != "" {
		var err error
		if q.Namespaces, err = resolveNamespaces("ls", o.netns, o.procRoot); err != nil {
			return q, err
		}
	}
	return q, nil
}

// batchGC tunes the garbage collector for a command that builds one large
// socket table, prints it and ends: with tens of thousands of sockets the
// default collector runs several cycles that only rescan the table. Instead
// collect only when the heap nears a limit sized from the table about to
// be read (/proc/net/sockstat counts it): room for the table twice over, so
// a fixed limit does not make the collector run dozens of times once the
// table outgrows it. The returned function restores the settings (tests run
// many commands in one process).
func batchGC(procRoot string) (restore func()) {
	n := 0
	if st, err := socktab.ReadSockstat(procRoot); err == nil {
		n = st.Sockets()
	}
	percent := debug.SetGCPercent(-1)
	limit := debug.SetMemoryLimit(gcLimit(n))
	return func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}

// pidNote says why --pid found no socket when the reason is not that the
// process holds none: its sockets are in another network namespace, which
// the table of this one does not show, or there is no such process (an
// error: exit 1, nothing listed).
func pidNote(w io.Writer, procRoot string, pid int) error {
	theirs, err := os.Stat(filepath.Join(procRoot, strconv.Itoa(pid), "ns", "net"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("ls: --pid %d: no such process", pid)
	case err != nil:
	default:
		if ours, err := os.Stat(filepath.Join(procRoot, "self", "ns", "net")); err == nil && !os.SameFile(ours, theirs) {
			warnf(w, "tuple: ls: process %d is in another network namespace: tuple ls --pid %d --netns %d lists its sockets\n", pid, pid, pid)
		}
	}
	return nil
}

// gcLimit is the heap limit for a table of n sockets: 920 bytes per socket
// above a floor for small tables. A listed socket takes about 330 bytes,
// owners and the output's garbage more; ports and the exporter hold at most
// about 860 per socket at once (the table, the kernel's records and the
// budget's entries, docs/benchmarks.md), and their resident set stays
// under 250 MiB at 200,000 sockets with this limit.
func gcLimit(n int) int64 {
	return max(48<<20, 24<<20+int64(n)*920)
}

func runLs(ctx context.Context, s Streams, o *lsOptions) error {
	q, err := o.query()
	if err != nil {
		return err
	}
	defer batchGC(o.procRoot)()
	if o.plainTable(q) {
		return runLsRows(ctx, s, q)
	}
	// As root the kernel's records give the reuse options, v6only and
	// device of every socket, those without a file (a listener's
	// unaccepted children) included, as who reads them.
	wait := func() *hostmodel.Facts { return nil }
	if q.Options && len(q.Namespaces) == 0 {
		q.OptionsFrom, wait = kernelOptions(q.TCP, q.UDP, q.LocalPort)
	}
	t, err := socktab.Snapshot(ctx, q)
	wait()
	if err != nil {
		return err
	}
	socks := t.Sockets
	if o.uid >= 0 || o.pid != 0 {
		kept := socks[:0]
		for _, sk := range socks {
			if o.uid >= 0 && int64(sk.UID) != o.uid {
				continue
			}
			if o.pid != 0 && !slices.ContainsFunc(sk.Owners, func(w socktab.Owner) bool { return w.PID == o.pid }) {
				continue
			}
			kept = append(kept, sk)
		}
		socks = kept
		if o.pid != 0 && len(socks) == 0 && o.netns == "" {
			if err := pidNote(s.Err, o.procRoot, o.pid); err != nil {
				return err
			}
		}
	}
	w := bufio.NewWriterSize(s.Out, 64<<10)
	if o.summary {
		writeSummary(w, socks)
	} else if o.json {
		err = writeJSONLinesNS(w, socks, t.Namespaces)
	} else {
		cols := columns{uid: o.extended, inode: o.extended, procs: q.Owners || q.Options, options: o.options}
		err = writeTableNS(w, socks, cols, t.Namespaces)
		// Groups are read through an iterator in this namespace only.
		if err == nil && o.options && len(t.Namespaces) == 0 {
			err = writeGroups(w, reusegroup.Read(socks)) // reusegroups.go
		}
	}
	if err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	tableNotes(s, t.Notes)
	return nil
}

// tableNotes prints what a socket table says it lacks (among them, where
// the kernel cannot list bound-only TCP sockets and they could not be
// looked for, that they are missing).
func tableNotes(s Streams, notes []string) {
	for _, n := range notes {
		warnf(s.Err, "tuple: note: %s\n", n)
	}
}

// plainTable reports whether the listing is the table without optional
// columns, filtered by the kernel alone: what socktab's rows hold, a
// seventh of a full socket's memory.
func (o *lsOptions) plainTable(q socktab.Query) bool {
	return !o.summary && !o.json && !o.extended && !q.Owners && !q.Options && o.uid < 0 && o.pid == 0 &&
		len(q.Namespaces) == 0
}

// runLsRows lists the plain table from socktab's rows.
func runLsRows(ctx context.Context, s Streams, q socktab.Query) error {
	t, err := socktab.SnapshotRows(ctx, q)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(s.Out, 64<<10)
	if err := writeRows(w, t.Rows); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	tableNotes(s, t.Notes)
	return nil
}

// writeRows prints rows exactly as writeTable prints the same sockets
// without optional columns, formatting each row straight into w's buffer
// (IPv4 addresses without netip): at 200,000 sockets the formatting is
// most of a listing's user time.
func writeRows(w *bufio.Writer, rows []socktab.Row) error {
	localW := len("Local")
	var scratch [64]byte
	for i := range rows {
		r := &rows[i]
		localW = max(localW, rowAddrPortLen(scratch[:], r.Family(), r.LocalAddr(), r.LocalPort()))
	}
	own := make([]byte, 0, 256)
	line := append(own, "Proto State      Recv-Q Send-Q "...)
	line = append(line, "Local"...)
	line = pad(line, localW-len("Local")+1)
	line = append(line, "Peer\n"...)
	if _, err := w.Write(line); err != nil {
		return err
	}
	for i := range rows {
		r := &rows[i]
		// Into w's buffer when a row surely fits (Write then copies
		// nothing), else into own, which Write copies after flushing.
		line = w.AvailableBuffer()
		if cap(line) < 160 {
			line = own[:0]
		}
		proto := r.Proto().String()
		line = append(line, proto...)
		line = pad(line, 6-len(proto))
		st := stateName(r.Proto(), r.State())
		line = append(line, st...)
		line = pad(line, 11-len(st))
		n := len(line)
		line = strconv.AppendUint(line, uint64(r.RecvQ()), 10)
		line = pad(line, 7-(len(line)-n))
		n = len(line)
		line = strconv.AppendUint(line, uint64(r.SendQ()), 10)
		line = pad(line, 7-(len(line)-n))
		n = len(line)
		line = appendRowAddrPort(line, r.Family(), r.LocalAddr(), r.LocalPort())
		line = pad(line, localW+1-(len(line)-n))
		line = appendRowAddrPort(line, r.Family(), r.RemoteAddr(), r.RemotePort())
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	return nil
}

// appendRowAddrPort is appendAddrPort for a row's address bytes.
func appendRowAddrPort(b []byte, fam inet.Family, a []byte, port uint16) []byte {
	if fam == inet.IPv4 {
		b = appendIPv4(b, a)
		b = append(b, ':')
		if port == 0 {
			return append(b, '*')
		}
		return strconv.AppendUint(b, uint64(port), 10)
	}
	return appendAddrPort(b, netip.AddrPortFrom(netip.AddrFrom16([16]byte(a)), port))
}

// rowAddrPortLen is the length appendRowAddrPort appends, counted for
// IPv4 without formatting.
func rowAddrPortLen(scratch []byte, fam inet.Family, a []byte, port uint16) int {
	if fam != inet.IPv4 {
		return len(appendRowAddrPort(scratch[:0], fam, a, port))
	}
	n := 3 + 1 + octetLen(a[0]) + octetLen(a[1]) + octetLen(a[2]) + octetLen(a[3]) // dots and colon
	switch {
	case port == 0 || port < 10:
		n++
	case port < 100:
		n += 2
	case port < 1000:
		n += 3
	case port < 10000:
		n += 4
	default:
		n += 5
	}
	return n
}

func octetLen(o byte) int {
	switch {
	case o >= 100:
		return 3
	case o >= 10:
		return 2
	}
	return 1
}

// appendIPv4 appends the dotted quad of a's four bytes.
func appendIPv4(b []byte, a []byte) []byte {
	for i, o := range a[:4] {
		if i > 0 {
			b = append(b, '.')
		}
		switch {
		case o >= 100:
			b = append(b, '0'+o/100, '0'+o/10%10, '0'+o%10)
		case o >= 10:
			b = append(b, '0'+o/10, '0'+o%10)
		default:
			b = append(b, '0'+o)
		}
	}
	return b
}

// columns says which optional columns a table has.
type columns struct {
	uid, inode, procs, options bool
}

// stateLabel is the state as ss prints it; an unconnected UDP socket is
// UNCONN and a bound-only TCP socket BOUND.
func stateLabel(sk *socktab.Socket) string { return stateName(sk.Proto, sk.State) }

func stateName(proto inet.Proto, st socktab.State) string {
	if int(st) < len(stateLabels) && stateLabels[st] != "" {
		if st == socktab.Close && proto == inet.UDP {
			return "UNCONN"
		}
		return stateLabels[st]
	}
	return strings.ToUpper(st.String())
}

// stateLabels are the labels of the kernel's states, built once.
var stateLabels = func() []string {
	l := make([]string, 16)
	for i := range l {
		l[i] = strings.ToUpper(socktab.State(i).String())
	}
	l[socktab.Established] = "ESTAB"
	l[socktab.NewSynRecv] = "SYN-RECV"
	l[0] = ""
	return l
}()

// appendAddrPort appends a:p, [a]:p for IPv6, and "*" for port 0.
func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr()
	if a.Is6() {
		b = append(b, '[')
		b = a.AppendTo(b)
		b = append(b, ']')
	} else {
		b = a.AppendTo(b)
	}
	b = append(b, ':')
	if ap.Port() == 0 {
		return append(b, '*')
	}
	return strconv.AppendUint(b, uint64(ap.Port()), 10)
}

func addrPortLen(scratch []byte, ap netip.AddrPort) int {
	return len(appendAddrPort(scratch[:0], ap))
}

func pad(b []byte, n int) []byte {
	for ; n > 0; n-- {
		b = append(b, ' ')
	}
	return b
}

// appendOwners appends comm(pid=N,fd=M) for each owner, comma-separated.
func appendOwners(b []byte, owners []socktab.Owner) []byte {
	for i, w := range owners {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, w.Comm...)
		b = append(b, "(pid="...)
		b = strconv.AppendInt(b, int64(w.PID), 10)
		b = append(b, ",fd="...)
		b = strconv.AppendInt(b, int64(w.FD), 10)
		b = append(b, ')')
	}
	return b
}

// appendOptions appends the options that are on ("reuseaddr reuseport"),
// "-" when none, and "?name" for each option that could not be read, then
// the reason once.
func appendOptions(b []byte, o *socktab.Options) []byte {
	start := len(b)
	reason := ""
	add := func(name string, v socktab.Bool) {
		switch {
		case v.Known && v.Value:
			if len(b) > start {
				b = append(b, ' ')
			}
			b = append(b, name...)
		case !v.Known && reason == "":
			reason = v.Reason
		}
	}
	add("reuseaddr", o.ReuseAddr)
	add("reuseport", o.ReusePort)
	add("v6only", o.V6Only)
	add("bind_address_no_port", o.BindAddressNoPort)
	add("freebind", o.Freebind)
	if o.Device.Known && o.Device.Value != "" {
		if len(b) > start {
			b = append(b, ' ')
		}
		b = append(b, "dev="...)
		b = append(b, o.Device.Value...)
	}
	if reason != "" && !o.ReuseAddr.Known && !o.ReusePort.Known {
		b = b[:start]
		return append(append(b, "unknown: "...), reason...)
	}
	if len(b) == start {
		b = append(b, '-')
	}
	return b
}

// writeTable prints socks as an aligned table like ss. Widths of the
// address columns come from a first pass; rows are formatted into one
// reused buffer, so printing allocates nothing per socket.
func writeTable(w *bufio.Writer, socks []socktab.Socket, c columns) error {
	var scratch [64]byte
	localW, peerW, optW := len("Local"), len("Peer"), len("Options")
	var opts []byte
	for i := range socks {
		localW = max(localW, addrPortLen(scratch[:], socks[i].Local))
		peerW = max(peerW, addrPortLen(scratch[:], socks[i].Remote))
		if c.options {
			opts = appendOptions(opts[:0], &socks[i].Options)
			optW = max(optW, len(opts))
		}
	}
	line := make([]byte, 0, 256)
	line = append(line, "Proto State      Recv-Q Send-Q "...)
	line = append(line, "Local"...)
	line = pad(line, localW-len("Local")+1)
	line = append(line, "Peer"...)
	if c.uid || c.options || c.procs {
		line = pad(line, peerW-len("Peer")+1)
	}
	if c.uid {
		line = append(line, "UID        Inode     "...)
	}
	if c.options {
		line = append(line, "Options"...)
		if c.procs {
			line = pad(line, optW-len("Options")+1)
		}
	}
	if c.procs {
		line = append(line, "Process"...)
	}
	line = append(line, '\n')
	if _, err := w.Write(line); err != nil {
		return err
	}
	for i := range socks {
		sk := &socks[i]
		line = line[:0]
		line = append(line, sk.Proto.String()...)
		line = pad(line, 6-len(sk.Proto.String()))
		st := stateLabel(sk)
		line = append(line, st...)
		line = pad(line, 11-len(st))
		n := len(line)
		line = strconv.AppendUint(line, uint64(sk.RecvQ), 10)
		line = pad(line, 7-(len(line)-n))
		n = len(line)
		line = strconv.AppendUint(line, uint64(sk.SendQ), 10)
		line = pad(line, 7-(len(line)-n))
		n = len(line)
		line = appendAddrPort(line, sk.Local)
		line = pad(line, localW+1-(len(line)-n))
		n = len(line)
		line = appendAddrPort(line, sk.Remote)
		tail := c.uid || c.options || (c.procs && len(sk.Owners) > 0)
		if tail {
			line = pad(line, peerW+1-(len(line)-n))
		}
		if c.uid {
			n = len(line)
			line = strconv.AppendUint(line, uint64(sk.UID), 10)
			line = pad(line, 11-(len(line)-n))
			n = len(line)
			line = strconv.AppendUint(line, sk.Inode, 10)
			line = pad(line, 10-(len(line)-n))
		}
		if c.options {
			n = len(line)
			line = appendOptions(line, &sk.Options)
			if c.procs && len(sk.Owners) > 0 {
				line = pad(line, optW+1-(len(line)-n))
			}
		}
		if c.procs {
			line = appendOwners(line, sk.Owners)
		}
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	return nil
}

// jsonBool is a socktab.Bool in JSON: {"known":true,"value":false} or
// {"known":false,"reason":"..."}.
type jsonBool struct {
	Known  bool   `json:"known"`
	Value  *bool  `json:"value,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func toJSONBool(b socktab.Bool) jsonBool {
	if !b.Known {
		return jsonBool{Reason: b.Reason}
	}
	v := b.Value
	return jsonBool{Known: true, Value: &v}
}

type jsonText struct {
	Known  bool    `json:"known"`
	Value  *string `json:"value,omitempty"`
	Reason string  `json:"reason,omitempty"`
}

type jsonOwner struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	FD   int    `json:"fd"`
}

type jsonOptions struct {
	ReuseAddr         jsonBool `json:"reuseaddr"`
	ReusePort         jsonBool `json:"reuseport"`
	V6Only            jsonBool `json:"v6only"`
	BindAddressNoPort jsonBool `json:"bind_address_no_port"`
	Freebind          jsonBool `json:"freebind"`
	Device            jsonText `json:"device"`
}

// jsonSocket is one line of `tuple ls --json` and `tuple who --json`. The
// field names are documented in docs/commands.md; keep them stable.
type jsonSocket struct {
	Proto      string      `json:"proto"`
	Family     int         `json:"family"`
	State      string      `json:"state"`
	LocalAddr  string      `json:"local_addr"`
	LocalPort  uint16      `json:"local_port"`
	PeerAddr   string      `json:"peer_addr"`
	PeerPort   uint16      `json:"peer_port"`
	RecvQ      uint32      `json:"recv_q"`
	SendQ      uint32      `json:"send_q"`
	UID        uint32      `json:"uid"`
	Inode      uint64      `json:"inode"`
	Cookie     uint64      `json:"cookie"`
	Dev        int         `json:"dev"`
	V6Only     jsonBool    `json:"v6only"`
	TimeLeftMS int64       `json:"time_left_ms"`
	Options    jsonOptions `json:"options"`
	Owners     []jsonOwner `json:"owners"`
	NetNS      *jsonNetNS  `json:"netns,omitempty"` // with --netns
}

func toJSONSocket(sk *socktab.Socket) jsonSocket {
	j := jsonSocket{
		Proto:      sk.Proto.String(),
		Family:     int(sk.Family),
		State:      sk.State.String(),
		LocalAddr:  sk.Local.Addr().String(),
		LocalPort:  sk.Local.Port(),
		PeerAddr:   sk.Remote.Addr().String(),
		PeerPort:   sk.Remote.Port(),
		RecvQ:      sk.RecvQ,
		SendQ:      sk.SendQ,
		UID:        sk.UID,
		Inode:      sk.Inode,
		Cookie:     sk.Cookie,
		Dev:        sk.Dev,
		V6Only:     toJSONBool(sk.V6Only),
		TimeLeftMS: sk.TimeLeft.Milliseconds(),
		Owners:     make([]jsonOwner, 0, len(sk.Owners)),
	}
	if sk.Proto == inet.UDP && sk.State == socktab.Close {
		j.State = "unconn"
	}
	o := &sk.Options
	j.Options = jsonOptions{
		ReuseAddr:         toJSONBool(o.ReuseAddr),
		ReusePort:         toJSONBool(o.ReusePort),
		V6Only:            toJSONBool(o.V6Only),
		BindAddressNoPort: toJSONBool(o.BindAddressNoPort),
		Freebind:          toJSONBool(o.Freebind),
		Device:            jsonText{Reason: o.Device.Reason},
	}
	if o.Device.Known {
		dev := o.Device.Value
		j.Options.Device = jsonText{Known: true, Value: &dev}
	}
	for _, w := range sk.Owners {
		j.Owners = append(j.Owners, jsonOwner{PID: w.PID, Comm: w.Comm, FD: w.FD})
	}
	return j
}

func writeJSONLines(w io.Writer, socks []socktab.Socket) error {
	enc := json.NewEncoder(w)
	for i := range socks {
		if err := enc.Encode(toJSONSocket(&socks[i])); err != nil {
			return err
		}
	}
	return nil
}

// formatDuration prints a time left with 0.1 s precision.
func formatDuration(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
}

// writeSummary prints counts like ss -s: sockets per protocol and family,
// then per state.
func writeSummary(w *bufio.Writer, socks []socktab.Socket) {
	type counts struct{ all, v4, v6 int }
	var tcp, udp counts
	states := map[string]int{}
	var order []string
	for i := range socks {
		sk := &socks[i]
		c := &tcp
		if sk.Proto == inet.UDP {
			c = &udp
		}
		c.all++
		if sk.Family == inet.IPv4 {
			c.v4++
		} else {
			c.v6++
		}
		label := sk.Proto.String() + " " + stateLabel(sk)
		if states[label] == 0 {
			order = append(order, label)
		}
		states[label]++
	}
	slices.Sort(order)
	fmt.Fprintf(w, "Total: %d (TCP %d, UDP %d)\n\n", tcp.all+udp.all, tcp.all, udp.all)
	fmt.Fprintf(w, "%-10s %-8s %-8s %s\n", "Transport", "Total", "IPv4", "IPv6")
	fmt.Fprintf(w, "%-10s %-8d %-8d %d\n", "TCP", tcp.all, tcp.v4, tcp.v6)
	fmt.Fprintf(w, "%-10s %-8d %-8d %d\n\n", "UDP", udp.all, udp.v4, udp.v6)
	fmt.Fprintf(w, "%-16s %s\n", "State", "Count")
	for _, l := range order {
		fmt.Fprintf(w, "%-16s %d\n", l, states[l])
	}
}
