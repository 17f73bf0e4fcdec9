package ports

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/prefault"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/sockfacts"
	"github.com/tuple-net/tuple/socktab"
)

// Reader reads a namespace's TCP sockets for the budget from the kernel's
// own records (the sockfacts BPF iterator), with one loaded program and
// buffers reused from one read to the next: for a process that reads them
// on every scrape. The iterator walks every socket of the listening and
// established tables with every fact the budget needs, so the socket table
// is dumped only for what it does not walk or time (bound-only sockets,
// TIME_WAIT timers), and no socket is held twice: the records are
// decoded one at a time into the rules model's sockets. It is not safe for
// concurrent use.
type Reader struct {
	facts *sockfacts.Reader // this read's: bare or withInode
	// bare reads no inodes (dear to read, needed only to find owners);
	// withInode reads those of the sockets holding a port of inodePorts,
	// the ephemeral range: the owners the budget ranks. Each is loaded at
	// the first read that needs it (withInode again when the range
	// changes).
	bare, withInode *sockfacts.Reader
	inodePorts      inet.PortRange

	buf    []byte // the iterator's output, a chunk at a time, reused
	tab    Table
	inodes []uint64 // parallel to tab.cols.socks
	// timeLeft is the array of tab.cols.timeLeft, reused.
	timeLeft []time.Duration
	tw       []twRef
}

// twRef is a TIME_WAIT entry's place in the table, to find its timer in
// the socket table by cookie.
type twRef struct {
	index  int
	cookie uint64
}

// NewReader loads the iterator's program. It fails, wrapping
// inet.ErrUnsupported, where the iterator cannot run (not root, no BTF):
// Snapshot then reads the socket table instead.
func NewReader() (*Reader, error) { return newReader(false, rules.Host{}) }

// newReader is NewReader loading the program a read of host with owners or
// without needs first.
func newReader(owners bool, host rules.Host) (*Reader, error) {
	r := &Reader{}
	if err := r.use(owners, host); err != nil {
		return nil, err
	}
	return r, nil
}

// use makes r.facts the program a read of host with owners or without
// needs, loading it the first time.
func (r *Reader) use(owners bool, host rules.Host) error {
	if !owners {
		if r.bare == nil {
			f, err := newFactsReader(sockfacts.SkipInode())
			if err != nil {
				return err
			}
			r.bare = f
		}
		r.facts = r.bare
		return nil
	}
	if r.withInode == nil || r.inodePorts != host.EphemeralRange {
		f, err := newFactsReader(sockfacts.InodesWithin(host.EphemeralRange))
		if err != nil {
			return err
		}
		r.withInode.Close()
		r.withInode, r.inodePorts = f, host.EphemeralRange
	}
	r.facts = r.withInode
	return nil
}

// newFactsReader loads a TCP iterator whose records replace the socket
// table: only where they say which ports connect() picked, which the
// budget counts apart and a table row cannot tell without its listener.
func newFactsReader(opt sockfacts.Option) (*sockfacts.Reader, error) {
	f, err := sockfacts.NewReader(inet.TCP, opt)
	if err != nil {
		return nil, err
	}
	if !f.KnowsPortOrigin() {
		f.Close()
		return nil, fmt.Errorf("kernel socket records %w: they do not say which ports connect() picked before Linux 6.17", inet.ErrUnsupported)
	}
	return f, nil
}

// Close unloads the programs.
func (r *Reader) Close() error {
	if r == nil {
		return nil
	}
	return errors.Join(r.bare.Close(), r.withInode.Close())
}

// The socket table is dumped beside the iterator for what it does not
// walk: bound-only sockets, which only the bind hash holds, and the
// TIME_WAIT entries' timers when there are entries (inet_diag shows an
// entry of substate FIN_WAIT2 in that state).
const (
	boundStates = 1 << socktab.BoundInactive
	timerStates = boundStates | 1<<socktab.TimeWait | 1<<socktab.FinWait2
)

// Read reads the calling thread's network namespace with host's settings;
// with owners it also finds the processes holding each socket the
// budget ranks holders by: those holding a port of the ephemeral range,
// and bound-only sockets (the sockfacts task_file iterator). The table is
// valid until the next Read.
func (r *Reader) Read(ctx context.Context, host rules.Host, procRoot string, owners bool) (*Table, error) {
	return r.ReadWith(ctx, func() (rules.Host, error) { return host, nil }, procRoot, owners)
}

// ReadWith is Read with the settings readHost returns, which it calls
// once, on the calling goroutine, and whose error it returns as is.
// Without owners the settings are read while the kernel's tables are
// walked (only the records' decoding needs them, and waits): a scrape's
// sysctls and addresses, a millisecond, are off its critical path. With
// owners they choose which sockets' inodes the walk reads, and are read
// first.
func (r *Reader) ReadWith(ctx context.Context, readHost func() (rules.Host, error), procRoot string, owners bool) (*Table, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	var host rules.Host
	var herr error
	hostRead := make(chan struct{}) // closed once host and herr are set
	if owners {
		host, herr = readHost()
		close(hostRead)
		if herr != nil {
			return nil, herr
		}
	}
	if err := r.use(owners, host); err != nil {
		if !owners {
			_, _ = readHost() // called once, as promised; the read failed anyway
		}
		return nil, err
	}
	n := 0
	states := socktab.StateSet(timerStates)
	if st, err := socktab.ReadSockstat(procRoot); err == nil {
		n = st.TCP + st.TimeWait
		if st.TimeWait == 0 {
			// No timers to read: the dump lists bound-only sockets
			// only. An entry that appears meanwhile is taken as just
			// entered.
			states = boundStates
		}
	}
	t := &r.tab
	if cap(t.cols.socks) < n+16 {
		// Some room to grow: a table a few sockets larger than the
		// last must not copy it all again.
		// Grown by append, the sockets would be copied again and again.
		room := n + n/32 + 64
		t.cols.socks, r.inodes = prefault.Make[rules.Socket](0, room), prefault.Make[uint64](0, room)
		// One bucket per port: a busy host's client ports are tens of
		// thousands of buckets, which grown by append would be copied
		// again and again into fresh pages.
		t.Buckets = prefault.Make[rules.Bucket](0, min(room, 1<<16))
	}
	t.Entries, t.Sockets = nil, nil
	t.cols.socks, t.cols.timeLeft, t.cols.owners, t.cols.findOwners = t.cols.socks[:0], nil, nil, nil
	if t.cols.keep == nil {
		t.cols.keep = new(kept)
	}
	t.Buckets = t.Buckets[:0]
	clear(t.Counts[:])
	r.inodes, r.tw = r.inodes[:0], r.tw[:0]

	var files func() ([]sockfacts.File, error)
	if owners {
		done := make(chan struct{})
		var fl []sockfacts.File
		var ferr error
		go func() {
			defer close(done)
			if fl, ferr = sockfacts.SocketFiles(); ferr == nil {
				// Sorted here, while the iterator still walks: not
				// after it, on the way to the budget.
				fl = byInode(fl)
			}
		}()
		files = func() ([]sockfacts.File, error) { <-done; return fl, ferr }
	}
	var seen portSet      // ports whose bucket is taken
	var listening portSet // ports of the listeners walked so far
	hostKnown := false    // the decoder's: it has seen hostRead closed
	wait := r.facts.ScanAsync(r.buf, func(k *sockfacts.Sock) {
		if st := inetDiagState(k); int(st) < len(t.Counts) {
			t.Counts[st]++
		}
		if !hostKnown {
			select {
			case <-hostRead:
				hostKnown = true
			default:
			}
		}
		// Until the settings are read, a connection accepted off the
		// range is kept (as one whose listener comes later): the
		// decoder never waits for them.
		settings := &host
		if !hostKnown {
			settings = nil
		}
		if acceptedOffRange(settings, k, &listening) {
			return
		}
		s, b, ok := hostmodel.FromRecord(k, 0)
		if !ok {
			return
		}
		if b.Port != 0 && !seen.has(b.Port) {
			seen.add(b.Port)
			t.Buckets = append(t.Buckets, b)
		}
		if s.State == rules.TimeWait {
			r.tw = append(r.tw, twRef{len(t.cols.socks), k.Cookie})
		}
		t.cols.socks = append(t.cols.socks, s)
		r.inodes = append(r.inodes, k.Inode)
	})
	dumped := socktab.SnapshotAsync(ctx, socktab.Query{TCP: true, States: states, ProcRoot: procRoot})
	if !owners {
		host, herr = readHost()
		close(hostRead)
	}
	dump, derr := dumped()
	buf, err := wait()
	r.buf = buf[:0]
	var fl []sockfacts.File
	var ferr error
	if files != nil {
		fl, ferr = files()
	}
	switch {
	case herr != nil:
		return nil, herr
	case err != nil:
		return nil, err
	case derr != nil:
		return nil, derr
	case ferr != nil:
		return nil, fmt.Errorf("socket owners: %w", ferr)
	}
	// Request sockets own no port and have no record: counted only, in
	// the state inet_diag reports them in.
	t.Counts[socktab.SynRecv] += r.facts.Requests()
	r.timeWaitTimers(dump.Sockets)
	r.fromTable(host, dump.Sockets)
	if owners {
		// Matched by the budget's census, beside the model's index.
		t.cols.findOwners = func() [][]Owner { return r.owners(fl, procRoot) }
	}
	return t, nil
}

// inetDiagState is k's state as inet_diag reports it: a TIME_WAIT entry
// by its substate.
func inetDiagState(k *sockfacts.Sock) socktab.State {
	if k.TimeWait && k.FinWait2 {
		return socktab.FinWait2
	}
	return socktab.State(k.State)
}

// acceptedOffRange reports whether k is a connection accepted on a
// listener's port that no ephemeral-port search visits: counted, but no
// part of the budget (no destination of its own, no port of the pool), so
// a server's many accepted connections cost the budget nothing. The
// iterator walks the listeners before the connections; a connection whose
// listener it has not walked yet is kept, and the census leaves it out.
// With host nil (the settings not read yet) it keeps every connection,
// but still notes the listeners.
func acceptedOffRange(host *rules.Host, k *sockfacts.Sock, listening *portSet) bool {
	switch p := k.Local.Port(); socktab.State(k.State) {
	case socktab.Listen:
		listening.add(p)
		return false
	case socktab.TimeWait, socktab.Close, socktab.BoundInactive, socktab.NewSynRecv:
		return false
	default:
		return host != nil && listening.has(p) && !rules.Searchable(*host, p)
	}
}

// timeWaitTimers gives each TIME_WAIT entry its time left, from the socket
// table's row of the same cookie, and so its age. An entry the dump did
// not see entered TIME_WAIT after the dump passed it: just now.
func (r *Reader) timeWaitTimers(rows []socktab.Socket) {
	if len(r.tw) == 0 {
		return
	}
	left := make(map[uint64]time.Duration, len(r.tw))
	for i := range rows {
		// A FIN-WAIT-2 row is an entry of that substate, or a full
		// socket whose cookie no entry has.
		if st := rows[i].State; st == socktab.TimeWait || st == socktab.FinWait2 {
			left[rows[i].Cookie] = rows[i].TimeLeft
		}
	}
	c := &r.tab.cols
	if cap(r.timeLeft) < len(c.socks) {
		r.timeLeft = make([]time.Duration, 0, cap(c.socks))
	}
	c.timeLeft = r.timeLeft[:len(c.socks)]
	clear(c.timeLeft)
	for _, tw := range r.tw {
		l, ok := left[tw.cookie]
		if !ok {
			l = TimeWaitLength
		}
		c.timeLeft[tw.index] = l
		c.socks[tw.index].TWAge = max(TimeWaitLength-l, 0)
	}
}

// fromTable adds the socket table's bound-only sockets to the table (the
// conversion FromTable uses: the iterator has no record of them).
func (r *Reader) fromTable(host rules.Host, rows []socktab.Socket) {
	t := &r.tab
	var bound []socktab.Socket
	for i := range rows {
		if s := &rows[i]; s.State == socktab.BoundInactive {
			bound = append(bound, *s)
			t.Counts[s.State]++
		}
	}
	hostmodel.EachEntry(host, &socktab.Table{Sockets: bound}, nil, func(s *socktab.Socket, e *hostmodel.Entry) {
		if !budgeted(&e.Socket) {
			return
		}
		t.cols.socks = append(t.cols.socks, e.Socket)
		r.inodes = append(r.inodes, s.Inode)
		if t.cols.timeLeft != nil {
			t.cols.timeLeft = append(t.cols.timeLeft, 0)
		}
	})
}

// owners finds each socket's owners by inode among every process's socket
// descriptors (files, sorted byInode), one Owner per descriptor, sharing
// one array.
func (r *Reader) owners(files []sockfacts.File, procRoot string) [][]Owner {
	out := prefault.Make[[]Owner](len(r.inodes), len(r.inodes))
	all := prefault.Make[Owner](0, len(files))
	comms := map[int32]string{}
	for i, ino := range r.inodes {
		if ino == 0 {
			continue
		}
		j, found := slices.BinarySearchFunc(files, ino, func(f sockfacts.File, ino uint64) int { return cmp.Compare(f.Inode, ino) })
		if !found {
			continue
		}
		start := len(all)
		for ; j < len(files) && files[j].Inode == ino; j++ {
			pid := files[j].PID
			comm, ok := comms[pid]
			if !ok {
				comm = readComm(procRoot, int(pid))
				comms[pid] = comm
			}
			all = append(all, Owner{PID: int(pid), Comm: comm})
		}
		out[i] = all[start:len(all):len(all)]
	}
	return out
}

// byInode sorts files by inode, then process and descriptor, for owners'
// binary search, dropping duplicates (a thread with its own copy of the
// file table lists its descriptors again).
func byInode(files []sockfacts.File) []sockfacts.File {
	slices.SortFunc(files, func(a, b sockfacts.File) int {
		if a.Inode != b.Inode { // nearly always: one compare, not three
			return cmp.Compare(a.Inode, b.Inode)
		}
		return cmp.Or(cmp.Compare(a.PID, b.PID), cmp.Compare(a.FD, b.FD))
	})
	return slices.Compact(files)
}

// readComm returns the command name of pid, "" when it cannot be read.
func readComm(procRoot string, pid int) string {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimRight(string(b), "\n")
}
