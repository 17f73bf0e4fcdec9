package ports

import (
	"context"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/sockfacts"

	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

// Snapshot reads the calling thread's network namespace's TCP sockets for
// the budget. Where the kernel's own records can be read (root, BTF) and
// options are not asked for, they are the table (Reader: every fact exact,
// owners from the task_file iterator); otherwise the socket table is read
// and converted (FromTable) with whatever records can be read. owners
// finds the processes holding each socket; options also reads their live
// options (one pidfd_getfd per socket), which helps where the kernel's own
// records cannot be read.
func Snapshot(ctx context.Context, host rules.Host, procRoot string, owners, options bool) (*Table, error) {
	if !options {
		if r, err := newReader(owners, host); err == nil {
			defer r.Close()
			if t, err := r.Read(ctx, host, procRoot, owners); err == nil {
				return t, nil
			}
		}
	}
	return SnapshotTable(ctx, host, procRoot, owners, options)
}

// SnapshotTable is Snapshot through the socket table: the whole table is
// dumped and converted, the kernel's records (read beside the dump) used
// where they can be read. It is the path taken where Reader cannot run.
func SnapshotTable(ctx context.Context, host rules.Host, procRoot string, owners, options bool) (*Table, error) {
	// The kernel's records are read beside the dump (and the owner pass).
	facts := StartFacts()
	t, err := socktab.Snapshot(ctx, socktab.Query{TCP: true, UDP: true, Owners: owners || options, Options: options, ProcRoot: procRoot})
	kf := facts()
	if err != nil {
		return nil, err
	}
	return FromTable(host, t, kf), nil
}

// Table is a namespace's TCP sockets as the budget takes them.
type Table struct {
	// Entries are the sockets as FromTable converted them; a Reader's
	// table keeps its sockets in its own columns instead and leaves
	// Entries empty.
	Entries []Entry
	// Buckets are the kernel's bind buckets of TCP ports (sockfacts), nil
	// when they could not be read; Budget passes them in Options.Buckets.
	Buckets []rules.Bucket
	// Sockets is the socket table they were converted from (FromTable).
	Sockets *socktab.Table
	// Counts are a Reader's TCP sockets per kernel state (socktab.State),
	// request sockets included.
	Counts [16]int

	cols columns // a Reader's sockets
}

// Budget is the budget of the table's sockets (Budget), with its buckets
// unless opt has its own. A Reader's table is the budget's to change: do
// not budget it twice; and give it the host it was read with (a Reader
// finds owners for the ports of that host's ephemeral range only).
func (t *Table) Budget(host rules.Host, opt Options) Report {
	if opt.Buckets == nil {
		opt.Buckets = t.Buckets
	}
	if t.cols.socks == nil {
		return Budget(t.Entries, host, opt)
	}
	return budget(t.cols, host, opt)
}

// ReadFacts reads the kernel's own records of TCP sockets (the sockfacts
// BPF iterator): whether connect() picked each port, reuse flags and
// TIME_WAIT timestamps, exactly. It is nil where the iterator cannot run
// (not root, no BTF); the budget then gives ranges for what it cannot know.
func ReadFacts() *hostmodel.Facts {
	return StartFacts()()
}

// StartFacts starts ReadFacts in the background, in the calling thread's
// network namespace, so the socket table can be dumped meanwhile; the
// returned function waits for the result.
func StartFacts() func() *hostmodel.Facts {
	// Room for every TCP socket the namespace counts, so the records are
	// read without growing their buffers.
	n := 0
	if st, err := socktab.ReadSockstat("/proc"); err == nil {
		n = st.TCP + st.TimeWait
	}
	wait := sockfacts.ReadAsync(inet.TCP, make([]sockfacts.Sock, 0, n+16))
	return func() *hostmodel.Facts {
		ks, err := wait()
		if err != nil {
			return nil
		}
		return hostmodel.IndexFacts(ks)
	}
}

// FromTable converts the TCP sockets of t into budget entries with the
// conversion `tuple why` uses (hostmodel.FromTable): facts, when not nil,
// make every fact exact; otherwise what the table cannot show (whether a
// port came from connect() or bind(), TIME_WAIT timestamps, unreadable
// options) is marked unknown, never silently guessed. Request sockets own no
// port and are left out.
func FromTable(host rules.Host, t *socktab.Table, facts *hostmodel.Facts) *Table {
	tab := &Table{Sockets: t}
	if t == nil {
		return tab
	}
	n, nOwners := 0, 0
	for i := range t.Sockets {
		if t.Sockets[i].Proto == inet.TCP {
			n++
			nOwners += len(t.Sockets[i].Owners)
		}
	}
	tab.Entries = make([]Entry, 0, n)
	owners := make([]Owner, 0, nOwners) // one backing array for every entry's owners
	tab.Buckets = hostmodel.EachEntry(host, t, facts, func(s *socktab.Socket, e *hostmodel.Entry) {
		if e.Socket.Proto != inet.TCP {
			return
		}
		start := len(owners)
		for _, o := range s.Owners {
			owners = append(owners, Owner{PID: o.PID, Comm: o.Comm})
		}
		tab.Entries = append(tab.Entries, Entry{Socket: e.Socket, TimeLeft: e.TimeLeft, Owners: owners[start:len(owners):len(owners)]})
	})
	return tab
}
