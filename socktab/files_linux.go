package socktab

import (
	"cmp"
	"errors"
	"slices"

	"github.com/tuple-net/tuple/sockfacts"
)

// ownerFiles is the BPF iterator's list of every process's socket
// descriptors, read in the background while the table is dumped.
type ownerFiles struct {
	started bool
	done    chan struct{}
	files   []sockfacts.File
	err     error
}

// start begins the read.
func (o *ownerFiles) start() {
	o.started, o.done = true, make(chan struct{})
	go func() {
		defer close(o.done)
		o.files, o.err = sockfacts.SocketFiles()
	}()
}

var errNotStarted = errors.New("not started")

// wait returns the list once read.
func (o *ownerFiles) wait() ([]sockfacts.File, error) {
	if !o.started {
		return nil, errNotStarted
	}
	<-o.done
	return o.files, o.err
}

// abandon waits for the pass to end when the snapshot fails anyway, so its
// goroutine does not outlive the call; its result no longer matters.
func (o *ownerFiles) abandon() {
	_, _ = o.wait()
}

// joinFiles matches descriptors to the table's sockets by inode and
// returns the hits ordered by socket index, pid and fd, as attachOwners
// wants them. The sockets are sorted by inode and each descriptor found by
// binary search, then the hits grouped by a counting sort: no map over a
// table of any size, and none of the three comparison sorts (descriptors,
// hits) that took a sixth of tuple ls -tap at 10,000 sockets. The first
// pass only counts, so the hits are written once, straight into their
// groups: each array here is fresh memory, which costs as much as the
// work on a virtual machine (see recvBatch).
func joinFiles(files []sockfacts.File, socks []Socket) []ownerHit {
	type byInode struct {
		inode uint64
		index int32
	}
	idx := make([]byInode, 0, len(socks))
	for i := range socks {
		if socks[i].Inode != 0 {
			idx = append(idx, byInode{socks[i].Inode, int32(i)})
		}
	}
	slices.SortFunc(idx, func(a, b byInode) int { return cmp.Compare(a.inode, b.inode) })
	// first[k] is where file k's sockets begin in idx, -1 for none;
	// ends[i+1] counts socket i's hits.
	first := make([]int32, len(files))
	ends := make([]int32, len(socks)+1)
	n := 0
	for k, f := range files {
		i, ok := slices.BinarySearchFunc(idx, f.Inode, func(e byInode, ino uint64) int { return cmp.Compare(e.inode, ino) })
		if !ok {
			first[k] = -1
			continue
		}
		first[k] = int32(i)
		for ; i < len(idx) && idx[i].inode == f.Inode; i++ {
			ends[idx[i].index+1]++
			n++
		}
	}
	for i := 1; i < len(ends); i++ {
		ends[i] += ends[i-1]
	}
	// Grouped by socket in descriptor order (ends[i] walks from group i's
	// start to its end), then each group, usually of one, by pid and fd.
	hits := make([]ownerHit, n)
	for k, f := range files {
		if first[k] < 0 {
			continue
		}
		for i := int(first[k]); i < len(idx) && idx[i].inode == f.Inode; i++ {
			s := idx[i].index
			hits[ends[s]] = ownerHit{index: s, pid: f.PID, fd: f.FD}
			ends[s]++
		}
	}
	start := int32(0)
	for _, end := range ends[:len(socks)] {
		if end-start > 1 {
			slices.SortFunc(hits[start:end], func(a, b ownerHit) int {
				if a.pid != b.pid {
					return cmp.Compare(a.pid, b.pid)
				}
				return cmp.Compare(a.fd, b.fd)
			})
		}
		start = end
	}
	// A thread with its own copy of the file table repeats its process's
	// descriptors.
	return slices.Compact(hits)
}
