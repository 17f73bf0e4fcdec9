package socktab

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"

	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/netns"
)

// Sockets of several namespaces come back in one table, each tagged with
// its own namespace, owners found across all of them; a namespace that
// cannot be entered is a note, not a failure.
func TestSnapshotAcrossNamespaces(t *testing.T) {
	var spaces []netns.Namespace
	want := map[uint16]uint64{} // listener port -> namespace inode
	for i := range 3 {
		ns := netnstest.New(t)
		got, err := netns.Resolve(netns.Spec{Name: ns.Name}, "/proc", netns.RunDir)
		if err != nil {
			t.Fatal(err)
		}
		spaces = append(spaces, got[0])
		port := uint16(7300 + i)
		// The same address and port in every namespace would also work;
		// distinct ports tell the rows apart.
		if err := ns.Do(func() error {
			ln, err := net.Listen("tcp4", "127.0.0.1:"+itoaPort(port))
			if err == nil {
				t.Cleanup(func() { ln.Close() })
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		want[port] = got[0].Inode
	}
	spaces = append(spaces, netns.Namespace{Inode: 1, Path: "/nonexistent/netns"})
	tab, err := Snapshot(context.Background(), Query{TCP: true, States: States(Listen), Owners: true, Namespaces: spaces})
	if err != nil {
		t.Fatal(err)
	}
	found := map[uint16]bool{}
	for _, s := range tab.Sockets {
		ino, ok := want[s.Local.Port()]
		if !ok {
			continue
		}
		found[s.Local.Port()] = true
		if s.NetNS != ino {
			t.Errorf("listener :%d tagged with namespace %d, want %d", s.Local.Port(), s.NetNS, ino)
		}
		if len(s.Owners) != 1 || s.Owners[0].PID != os.Getpid() {
			t.Errorf("listener :%d owners %+v, want this process", s.Local.Port(), s.Owners)
		}
	}
	if len(found) != len(want) {
		t.Errorf("found listeners %v, want ports %v", found, want)
	}
	if len(tab.Notes) != 1 || len(tab.Namespaces) != 4 {
		t.Errorf("notes %q (want one for the missing namespace), namespaces %d", tab.Notes, len(tab.Namespaces))
	}
}

func itoaPort(p uint16) string { return strconv.Itoa(int(p)) }
