package hostmodel

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/sockfacts"
	"github.com/tuple-net/tuple/socktab"
)

// Live reads the calling thread's network namespace: host facts and the
// socket table of proto, with every fact the rules need.
//
// Finding owners means scanning every process's descriptors, the slow part
// of a snapshot, so it is done only when needed: the BPF iterator
// (sockfacts) gives the options of every socket it sees, and owners are
// then looked up later, for blockers only (loadOwners). Without the
// iterator, or for TCP sockets it does not walk (bound-only ones), the
// table is read again with owners and their options (pidfd_getfd).
func Live(ctx context.Context, proto inet.Proto, procRoot string) (*Situation, error) {
	host, notes, err := ReadHost(procRoot)
	if err != nil {
		return nil, err
	}
	// One search for bound-only sockets (kernels before 6.8) serves
	// every read of the table below and loadOwners'.
	q := socktab.Query{TCP: proto == inet.TCP, UDP: proto == inet.UDP, ProcRoot: procRoot, BoundOnly: &socktab.BoundOnlySearch{}}
	t, err := socktab.Snapshot(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("socket table: %w", err)
	}
	// The kernel's own records, read after the dump, which assigned every
	// listed socket a cookie.
	var facts *Facts
	fp := inet.TCP
	if proto == inet.UDP {
		fp = inet.UDP
	}
	if ks, err := sockfacts.Read(fp); err == nil {
		facts = IndexFacts(ks)
	} else {
		notes = append(notes, factsNote(err))
	}
	withOwners := facts == nil
	for i := range t.Sockets {
		if s := &t.Sockets[i]; s.Local.Port() != 0 && s.State != socktab.NewSynRecv && facts.Lookup(s) == nil {
			withOwners = true
			break
		}
	}
	if withOwners {
		q.Owners, q.Options = true, true
		if t, err = socktab.Snapshot(ctx, q); err != nil {
			return nil, fmt.Errorf("socket table: %w", err)
		}
	}
	ProbeIfCrowded(&host, t.Sockets)
	sit := FromTable(host, t, facts)
	sit.Notes = append(notes, sit.Notes...)
	sit.ownersRead = withOwners
	sit.query = q
	return sit, nil
}

// loadOwners finds the processes holding the sockets at idx (typically the
// blockers) when Live did not read owners. Sockets are matched by inode.
func (sit *Situation) loadOwners(ctx context.Context, idx []int) error {
	if sit.ownersRead || !slices.ContainsFunc(idx, func(i int) bool { return sit.Entries[i].Inode != 0 }) {
		return nil // read already, or only TIME_WAIT entries, which have no owner
	}
	q := sit.query
	q.Owners = true
	if len(idx) == 1 {
		q.LocalPort = sit.Entries[idx[0]].Socket.Local.Port()
	}
	t, err := socktab.Snapshot(ctx, q)
	if err != nil {
		return fmt.Errorf("socket owners: %w", err)
	}
	byInode := map[uint64][]socktab.Owner{}
	for _, s := range t.Sockets {
		if s.Inode != 0 {
			byInode[s.Inode] = s.Owners
		}
	}
	for _, i := range idx {
		if e := &sit.Entries[i]; e.Inode != 0 {
			e.Owners = byInode[e.Inode]
		}
	}
	sit.ownersRead = len(idx) == len(sit.Entries)
	return nil
}

// factsNote says why the kernel's socket records were not read. Without
// root the cause is the missing privilege, whatever the loader's error
// suggests (it blames the memlock limit).
func factsNote(err error) string {
	const then = "options come from owners' descriptors where readable; the rest is assumed, as stated"
	if os.Geteuid() != 0 {
		return "kernel socket facts not read: the BPF socket iterator needs root (" + sockfacts.UnprivilegedCause() + "); " + then
	}
	return fmt.Sprintf("kernel socket facts not read (%v): %s", err, then)
}
