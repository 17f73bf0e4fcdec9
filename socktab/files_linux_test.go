package socktab

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/tuple-net/tuple/internal/testenv"
	"github.com/tuple-net/tuple/sockfacts"
)

// TestOwnersFromIteratorMatchProcScan: the owners the BPF task_file
// iterator finds (one pass in the kernel) are the ones reading every
// /proc/PID/fd finds, descriptor for descriptor, a socket held by two
// processes included.
func TestOwnersFromIteratorMatchProcScan(t *testing.T) {
	ns, _, _ := worldWithChild(t)

	tab := snapshotIn(t, ns, Query{})
	files, err := sockfacts.SocketFiles()
	if err != nil {
		testenv.Missing(t, "BPF task_file iterator: "+err.Error())
	}
	got := joinFiles(files, tab.Sockets)
	want := make(map[uint64]int, len(tab.Sockets))
	for i, s := range tab.Sockets {
		if s.Inode != 0 {
			want[s.Inode] = i
		}
	}
	scanned, denied, _ := findOwners("/proc", want)
	if denied != 0 {
		t.Fatalf("%d processes not readable", denied)
	}
	if diff := gocmp.Diff(scanned, got, gocmp.AllowUnexported(ownerHit{})); diff != "" {
		t.Errorf("owners (-/proc scan +iterator):\n%s", diff)
	}
	two := 0
	for i := range got {
		if i > 0 && got[i].index == got[i-1].index {
			two++
		}
	}
	if two == 0 {
		t.Errorf("no socket with two owners among %d hits: the inherited listener is missing", len(got))
	}
}

// joinFiles against the obvious join (a map from inode to sockets, then a
// sort), over random tables: sockets without an inode, two rows with one
// inode, descriptors of no listed socket, repeated descriptors (a thread's
// own copy of the file table), in any order.
func TestJoinFilesMatchesMapJoin(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		socks := make([]Socket, rng.IntN(40))
		for i := range socks {
			if rng.IntN(8) > 0 {
				socks[i].Inode = uint64(1 + rng.IntN(30))
			}
		}
		files := make([]sockfacts.File, rng.IntN(60))
		for i := range files {
			files[i] = sockfacts.File{PID: int32(1 + rng.IntN(5)), FD: int32(rng.IntN(6)), Inode: uint64(1 + rng.IntN(35))}
		}
		byInode := map[uint64][]int{}
		for i, s := range socks {
			if s.Inode != 0 {
				byInode[s.Inode] = append(byInode[s.Inode], i)
			}
		}
		var want []ownerHit
		for _, f := range files {
			for _, i := range byInode[f.Inode] {
				want = append(want, ownerHit{index: int32(i), pid: f.PID, fd: f.FD})
			}
		}
		slices.SortFunc(want, func(a, b ownerHit) int {
			return cmp.Or(cmp.Compare(a.index, b.index), cmp.Compare(a.pid, b.pid), cmp.Compare(a.fd, b.fd))
		})
		want = slices.Compact(want)
		got := joinFiles(slices.Clone(files), socks)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: joinFiles(%v, %v)\n got %v\nwant %v", round, files, socks, got, want)
		}
	}
}
