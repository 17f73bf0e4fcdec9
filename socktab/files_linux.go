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
// hits) that took a sixth of tuple ls -tap at 10,000 sockets.
func joinFiles(files []sockfacts.File, socks []Socket) []ownerHit {
	type byInode struct {
		inode uint64
		index int
	}
	idx := make([]byInode, 0, len(socks))
	for i := range socks {
		if socks[i].Inode != 0 {
			idx = append(idx, byInode{socks[i].Inode, i})
		}
	}
	slices.SortFunc(idx, func(a, b byInode) int { return cmp.Compare(a.inode, b.inode) })
	// Hits in descriptor order; ends[i+1] counts socket i's.
	found := make([]ownerHit, 0, len(files))
	ends := make([]int, len(socks)+1)
	for _, f := range files {
		i, _ := slices.BinarySearchFunc(idx, f.Inode, func(e byInode, ino uint64) int { return cmp.Compare(e.inode, ino) })
		for ; i < len(idx) && idx[i].inode == f.Inode; i++ {
			found = append(found, ownerHit{index: idx[i].index, pid: int(f.PID), fd: int(f.FD)})
			ends[idx[i].index+1]++
		}
	}
	for i := 1; i < len(ends); i++ {
		ends[i] += ends[i-1]
	}
	// Grouped by socket (stable: ends[i] walks from group i's start to
	// its end), then each group, usually of one, by pid and fd.
	hits := make([]ownerHit, len(found))
	for _, h := range found {
		hits[ends[h.index]] = h
		ends[h.index]++
	}
	start := 0
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
