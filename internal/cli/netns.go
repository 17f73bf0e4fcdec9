package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tuple-net/tuple/netns"
	"github.com/tuple-net/tuple/ports"
	"github.com/tuple-net/tuple/socktab"
)

// addNetnsFlag adds --netns, the same for every command that reads sockets.
func addNetnsFlag(f *pflag.FlagSet, p *string, what string) {
	f.StringVar(p, "netns", "", what+" in these network namespaces instead of this one: all, a name under /run/netns, a PID, or a namespace file's path")
}

// addOneNetnsFlag is --netns for a command that answers for one namespace
// (inNamespace): all is not offered.
func addOneNetnsFlag(f *pflag.FlagSet, p *string, what string) {
	f.StringVar(p, "netns", "", what+" in this network namespace instead of this one: a name under /run/netns, a PID, or a namespace file's path")
}

// resolveNamespaces turns --netns into namespaces: a malformed value is a
// usage error (exit 2), a namespace that does not exist or cannot be read a
// runtime one.
func resolveNamespaces(cmd, spec, procRoot string) ([]netns.Namespace, error) {
	sp, err := netns.ParseSpec(spec)
	if err != nil {
		return nil, usageError("%s: --netns: %v", cmd, err)
	}
	if procRoot == "" {
		procRoot = "/proc"
	}
	nss, err := netns.Resolve(sp, procRoot, netns.RunDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usageError("%s: --netns %s: no such network namespace", cmd, spec)
	}
	if errors.Is(err, netns.ErrNotNetNamespace) {
		return nil, usageError("%s: --netns %v", cmd, err) // names the path
	}
	if err != nil {
		return nil, fmt.Errorf("%s: --netns %s: %w", cmd, spec, err)
	}
	return nss, nil
}

// namespaceHeader is the line that introduces a namespace's rows: its label
// and what identifies it.
func namespaceHeader(ns netns.Namespace) string {
	parts := []string{"inode " + strconv.FormatUint(ns.Inode, 10)}
	if ns.PodUID != "" && !strings.HasPrefix(ns.Label(), "pod:") {
		parts = append(parts, "pod "+ns.PodUID)
	}
	if ns.ID != "" {
		parts = append(parts, "container "+ns.ID[:12])
	}
	if ns.Runtime != "" {
		parts = append(parts, ns.Runtime)
	}
	if len(ns.PIDs) > 0 {
		parts = append(parts, "pids "+pidList(ns.PIDs))
	}
	return "netns " + ns.Label() + " (" + strings.Join(parts, ", ") + ")"
}

func pidList(pids []int) string {
	var b strings.Builder
	for i, p := range pids {
		if i == 5 {
			fmt.Fprintf(&b, ",... %d in all", len(pids))
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(p))
	}
	return b.String()
}

// jsonNetNS is a socket's namespace in --json output.
type jsonNetNS struct {
	Inode       uint64 `json:"inode"`
	Name        string `json:"name,omitempty"`
	PodUID      string `json:"pod_uid,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	Runtime     string `json:"runtime,omitempty"`
}

func toJSONNetNS(ns netns.Namespace) *jsonNetNS {
	return &jsonNetNS{Inode: ns.Inode, Name: ns.Name, PodUID: ns.PodUID, ContainerID: ns.ID, Runtime: ns.Runtime}
}

// byNamespace indexes namespaces by inode.
func byNamespace(nss []netns.Namespace) map[uint64]netns.Namespace {
	m := make(map[uint64]netns.Namespace, len(nss))
	for _, ns := range nss {
		m[ns.Inode] = ns
	}
	return m
}

// writeTableNS writes the table, one section per namespace when the table
// was read across namespaces (in namespace order; sockets stay in their
// order within a section).
func writeTableNS(w *bufio.Writer, socks []socktab.Socket, c columns, nss []netns.Namespace) error {
	if len(nss) == 0 {
		return writeTable(w, socks, c)
	}
	groups := map[uint64][]socktab.Socket{}
	for _, sk := range socks {
		groups[sk.NetNS] = append(groups[sk.NetNS], sk)
	}
	first := true
	for _, ns := range nss {
		g := groups[ns.Inode]
		if len(g) == 0 {
			continue
		}
		if !first {
			w.WriteByte('\n')
		}
		first = false
		w.WriteString(namespaceHeader(ns) + "\n")
		if err := writeTable(w, g, c); err != nil {
			return err
		}
	}
	return nil
}

// writeJSONLinesNS is writeJSONLines with each socket's namespace.
func writeJSONLinesNS(w io.Writer, socks []socktab.Socket, nss []netns.Namespace) error {
	if len(nss) == 0 {
		return writeJSONLines(w, socks)
	}
	index := byNamespace(nss)
	enc := json.NewEncoder(w)
	for i := range socks {
		j := toJSONSocket(&socks[i])
		if ns, ok := index[socks[i].NetNS]; ok {
			j.NetNS = toJSONNetNS(ns)
		}
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}

// runWhoNamespaces answers `who` in each namespace --netns selects, from a
// thread inside it (the socket table, the kernel's records and the sysctls
// are all per namespace), printing only the namespaces where something
// holds the port, each under its header; --json prints one object with the
// namespaces' answers.
func runWhoNamespaces(ctx context.Context, s Streams, o *whoOptions) error {
	nss, err := resolveNamespaces("who", o.netns, o.procRoot)
	if err != nil {
		return err
	}
	type nsAnswer struct {
		NetNS *jsonNetNS      `json:"netns"`
		Who   json.RawMessage `json:"who"`
	}
	answers := []nsAnswer{}
	var notes []string
	w := bufio.NewWriter(s.Out)
	for _, ns := range nss {
		var out bytes.Buffer
		one := *o
		one.netns, one.quietIfFree = "", true
		err := netns.Do(ns.Path, func() error {
			return runWho(ctx, Streams{In: s.In, Out: &out, Err: s.Err}, &one)
		})
		if err != nil {
			notes = append(notes, fmt.Sprintf("namespace %s not read: %v", ns.Label(), err))
			continue
		}
		if out.Len() == 0 {
			continue
		}
		if o.json {
			answers = append(answers, nsAnswer{NetNS: toJSONNetNS(ns), Who: json.RawMessage(bytes.TrimSpace(out.Bytes()))})
			continue
		}
		if len(answers) > 0 {
			w.WriteByte('\n')
		}
		answers = append(answers, nsAnswer{})
		w.WriteString(namespaceHeader(ns) + "\n")
		w.Write(out.Bytes())
	}
	if o.json {
		if err := json.NewEncoder(w).Encode(struct {
			Port       uint16     `json:"port"`
			Namespaces []nsAnswer `json:"namespaces"`
			Notes      []string   `json:"notes,omitempty"`
		}{o.port, answers, notes}); err != nil {
			return err
		}
		return w.Flush()
	}
	if len(answers) == 0 {
		fmt.Fprintf(w, "nothing holds port %d in %s\n", o.port, countNamespaces(len(nss)))
	}
	for _, n := range notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return w.Flush()
}

func countNamespaces(n int) string {
	if n == 1 {
		return "the namespace"
	}
	return "any of " + strconv.Itoa(n) + " namespaces"
}

// inNamespace runs fn in the one namespace spec names, or here when spec is
// empty; "all" is refused: the command answers for one namespace.
func inNamespace(cmd, spec, procRoot string, fn func() error) error {
	if spec == "" {
		return fn()
	}
	if spec == "all" {
		return usageError("%s: --netns all: %s answers for one namespace; name it (a name, a PID or a path)", cmd, cmd)
	}
	nss, err := resolveNamespaces(cmd, spec, procRoot)
	if err != nil {
		return err
	}
	return netns.Do(nss[0].Path, fn)
}

// runPortsNamespaces reports the budget of each namespace --netns selects
// (ports are a per-namespace resource), read from a thread inside it; the
// namespaces with the most ports in use first, --top of them.
func runPortsNamespaces(ctx context.Context, o portsOptions, s Streams, opt ports.Options) error {
	if o.NAT {
		return usageError("ports: --nat reads this namespace's NAT; run it inside the router's namespace instead of with --netns")
	}
	nss, err := resolveNamespaces("ports", o.Netns, o.ProcRoot)
	if err != nil {
		return err
	}
	type nsReport struct {
		NetNS  *jsonNetNS   `json:"netns"`
		Report ports.Report `json:"report"`
		label  string
	}
	var reps []nsReport
	var notes []string
	for _, ns := range nss {
		var rep ports.Report
		err := netns.Do(ns.Path, func() error {
			t, host, err := o.read(ctx, o)
			if err == nil {
				rep = t.Budget(host, opt)
			}
			return err
		})
		if err != nil {
			notes = append(notes, fmt.Sprintf("namespace %s not read: %v", ns.Label(), err))
			continue
		}
		reps = append(reps, nsReport{NetNS: toJSONNetNS(ns), Report: rep, label: namespaceHeader(ns)})
	}
	slices.SortStableFunc(reps, func(a, b nsReport) int { return b.Report.InUse - a.Report.InUse })
	shown := reps[:min(len(reps), o.Top)]
	if o.JSON {
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Namespaces []nsReport `json:"namespaces"`
			More       int        `json:"more"`
			Notes      []string   `json:"notes,omitempty"`
		}{shown, len(reps) - len(shown), notes}); err != nil {
			return writeFailed(err)
		}
		return nil
	}
	w := bufio.NewWriter(s.Out)
	for i, r := range shown {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, r.label)
		if err := writePortsReport(w, r.Report, o.Top); err != nil {
			return writeFailed(err)
		}
	}
	if n := len(reps) - len(shown); n > 0 {
		fmt.Fprintf(w, "\n... and %d more namespaces with fewer ports in use (--top)\n", n)
	}
	if err := w.Flush(); err != nil {
		return writeFailed(err)
	}
	for _, n := range notes {
		warnf(s.Err, "tuple: note: %s\n", n)
	}
	return nil
}
