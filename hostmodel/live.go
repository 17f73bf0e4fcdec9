package hostmodel

import (
	"context"
	"fmt"

	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/sockfacts"
	"github.com/tuple-net/tuple/socktab"
)

// Live reads the calling thread's network namespace: host facts, and the
// socket table of proto with owners and their live options.
func Live(ctx context.Context, proto rules.Proto, procRoot string) (*Situation, error) {
	host, notes, err := ReadHost(procRoot)
	if err != nil {
		return nil, err
	}
	q := socktab.Query{TCP: proto == rules.TCP, UDP: proto == rules.UDP, Owners: true, Options: true, ProcRoot: procRoot}
	t, err := socktab.Snapshot(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("socket table: %w", err)
	}
	// The kernel's own records give the facts inet_diag lacks; read after
	// the dump, which assigned every listed socket a cookie.
	var facts *Facts
	fp := sockfacts.TCP
	if proto == rules.UDP {
		fp = sockfacts.UDP
	}
	if ks, err := sockfacts.Read(fp); err == nil {
		facts = IndexFacts(ks)
	} else {
		notes = append(notes, fmt.Sprintf("kernel socket facts not read (%v): unknown options and port origins are assumed, as stated", err))
	}
	sit := FromTable(host, t, facts)
	sit.Notes = append(notes, sit.Notes...)
	return sit, nil
}
