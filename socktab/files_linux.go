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

// joinFiles matches descriptors to the table's sockets by inode, both
// sorted (no map over a table of any size), and returns the hits ordered
// by socket index, pid and fd, as attachOwners wants them.
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
	slices.SortFunc(files, func(a, b sockfacts.File) int {
		return cmp.Or(cmp.Compare(a.Inode, b.Inode), cmp.Compare(a.PID, b.PID), cmp.Compare(a.FD, b.FD))
	})
	var hits []ownerHit
	j := 0
	for k, f := range files {
		if k > 0 && f == files[k-1] {
			continue // a thread with its own copy of the file table
		}
		for j < len(idx) && idx[j].inode < f.Inode {
			j++
		}
		for i := j; i < len(idx) && idx[i].inode == f.Inode; i++ {
			hits = append(hits, ownerHit{index: idx[i].index, pid: int(f.PID), fd: int(f.FD)})
		}
	}
	slices.SortFunc(hits, func(a, b ownerHit) int {
		return cmp.Or(cmp.Compare(a.index, b.index), cmp.Compare(a.pid, b.pid), cmp.Compare(a.fd, b.fd))
	})
	return hits
}
