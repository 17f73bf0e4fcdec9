package socktab

import (
	"testing"

	"github.com/google/go-cmp/cmp"

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
	if diff := cmp.Diff(scanned, got, cmp.AllowUnexported(ownerHit{})); diff != "" {
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
