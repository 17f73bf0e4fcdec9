package ports

import (
	"context"
	"fmt"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/sockfacts"

	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

// Snapshot reads the calling thread's network namespace's socket table and
// returns its TCP sockets as budget entries, with the table for callers that
// also count sockets. owners finds the processes holding each socket (a scan
// of every /proc/PID/fd); options also reads their live options (one
// pidfd_getfd per socket), which helps where the kernel's own records
// (ReadFacts) cannot be read. When they cannot, the table's Notes say why.
func Snapshot(ctx context.Context, host rules.Host, procRoot string, owners, options bool) ([]Entry, *socktab.Table, error) {
	t, err := socktab.Snapshot(ctx, socktab.Query{TCP: true, UDP: true, Owners: owners || options, Options: options, ProcRoot: procRoot})
	if err != nil {
		return nil, nil, err
	}
	// The facts are read after the dump, which gave every socket a cookie.
	facts, err := ReadFacts()
	if err != nil {
		t.Notes = append(t.Notes, err.Error()+"; free ports are given as ranges")
	}
	return FromTable(host, t, facts), t, nil
}

// ReadFacts reads the kernel's own records of TCP sockets (the sockfacts
// BPF iterator): whether connect() picked each port, reuse flags and
// TIME_WAIT timestamps, exactly. Where the iterator cannot run (not root,
// no BTF) it returns the reason, wrapping inet.ErrUnsupported; the budget
// then gives ranges for what it cannot know.
func ReadFacts() (*hostmodel.Facts, error) {
	ks, err := sockfacts.Read(inet.TCP)
	if err != nil {
		return nil, fmt.Errorf("kernel socket records: %w", err)
	}
	return hostmodel.IndexFacts(ks), nil
}

// FromTable converts the TCP sockets of t into budget entries with the
// conversion `tuple why` uses (hostmodel.FromTable): facts, when not nil,
// make every fact exact; otherwise what the table cannot show (whether a
// port came from connect() or bind(), TIME_WAIT timestamps, unreadable
// options) is marked unknown, never silently guessed. Request sockets own no
// port and are left out.
func FromTable(host rules.Host, t *socktab.Table, facts *hostmodel.Facts) []Entry {
	sit := hostmodel.FromTable(host, t, facts)
	entries := make([]Entry, 0, len(sit.Entries))
	for _, e := range sit.Entries {
		if e.Socket.Proto != inet.TCP {
			continue
		}
		pe := Entry{Socket: e.Socket, TimeLeft: e.TimeLeft, Owners: make([]Owner, 0, len(e.Owners))}
		for _, o := range e.Owners {
			pe.Owners = append(pe.Owners, Owner{PID: o.PID, Comm: o.Comm})
		}
		entries = append(entries, pe)
	}
	return entries
}
