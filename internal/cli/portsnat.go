package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/tuple-net/tuple/nat"
)

// natReport is `tuple ports --nat --json`.
type natReport struct {
	Rules    []string     `json:"rules"`
	Budgets  []nat.Budget `json:"budgets"`
	Counters nat.Counters `json:"conntrack"`
}

func runPortsNAT(ctx context.Context, o portsOptions, s Streams) error {
	snap, err := nat.Read(ctx)
	if err != nil {
		return fmt.Errorf("reading NAT rules and conntrack: %w", err)
	}
	rep := natReport{Budgets: snap.Budgets(), Counters: snap.Counters, Rules: []string{}}
	for _, r := range snap.Rules {
		rep.Rules = append(rep.Rules, r.Describe())
	}
	if rep.Budgets == nil {
		rep.Budgets = []nat.Budget{}
	}
	if o.JSON {
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return writeFailed(err)
		}
		return nil
	}
	if err := writeNATReport(s.Out, rep, o.Top); err != nil {
		return writeFailed(err)
	}
	return nil
}

func writeNATReport(out io.Writer, rep natReport, top int) error {
	w := bufio.NewWriter(out)
	if len(rep.Rules) == 0 {
		fmt.Fprintln(w, "Source-NAT rules  none in nftables (iptables-legacy rules are not read)")
	}
	for i, r := range rep.Rules {
		label := ""
		if i == 0 {
			label = "Source-NAT rules"
		}
		fmt.Fprintf(w, "%-17s %s\n", label, r)
	}
	fmt.Fprintf(w, "conntrack         insert_failed %d, drop %d, early_drop %d (since boot, all CPUs)\n",
		rep.Counters.InsertFailed, rep.Counters.Drop, rep.Counters.EarlyDrop)
	if len(rep.Budgets) == 0 {
		fmt.Fprintln(w, "\nNo translated connections: every destination has the whole range of its rule free.")
		return w.Flush()
	}
	portsTable(w, "Per NAT address and destination (fewest free first)", rep.Budgets, top,
		[]string{"NAT ADDRESS", "PROTO", "DESTINATION", "IN USE", "FREE", "OF", "RULE"},
		func(b nat.Budget) []string {
			free := fmt.Sprint(b.Free)
			if !b.Exhaustive && b.Free > 0 {
				free += "*"
			}
			rule := b.Rule
			if rule == "" {
				rule = "(no nftables rule explains this address: kernel default range assumed)"
			}
			return []string{b.NATAddress.String(), b.Proto, b.Destination.String(), fmt.Sprint(b.InUse), free, fmt.Sprint(b.Size), rule}
		})
	for _, b := range rep.Budgets {
		if !b.Exhaustive && b.Free > 0 {
			fmt.Fprintln(w, "\n* the kernel searches a range over 128 ports in rounds of 128, 64, 32 and 16 ports from random\n  offsets, so near exhaustion a connection can be dropped (conntrack insert_failed) while ports remain.")
			break
		}
	}
	return w.Flush()
}
