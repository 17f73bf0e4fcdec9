package ports

import (
	"context"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/sockfacts"

	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

// Snapshot reads the calling thread's network namespace's socket table and
// returns its TCP sockets as budget entries, with the table for callers that
// also count sockets and the kernel's bind buckets where readable. owners finds the processes holding each socket (a scan
// of every /proc/PID/fd); options also reads their live options (one
// pidfd_getfd per socket), which helps where the kernel's own records
// (ReadFacts) cannot be read.
func Snapshot(ctx context.Context, host rules.Host, procRoot string, owners, options bool) (*Table, error) {
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
	Entries []Entry
	// Buckets are the kernel's bind buckets of TCP ports (sockfacts), nil
	// when they could not be read; pass them in Options.Buckets.
	Buckets []rules.Bucket
	// Sockets is the socket table they were converted from.
	Sockets *socktab.Table
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
