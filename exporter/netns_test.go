package exporter

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tuple-net/tuple/netns"
	"github.com/tuple-net/tuple/socktab"
)

// fakeNamespaces is a collector over n namespaces where namespace i holds
// i*10 ports and the last cannot be read.
func fakeNamespaces(n, top int) *NamespacesCollector {
	c := newNamespacesCollector(top, 0, slog.New(slog.DiscardHandler))
	c.list = func() ([]netns.Namespace, error) {
		var out []netns.Namespace
		for i := range n {
			ns := netns.Namespace{Inode: uint64(4026530000 + i)}
			if i == 1 {
				ns.Name = "named"
			}
			if i == 2 {
				ns.PodUID = "0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e"
			}
			out = append(out, ns)
		}
		return out, nil
	}
	c.read = func(_ context.Context, ns netns.Namespace, _ *socktab.BoundOnlySearch) (NamespaceSummary, error) {
		i := int(ns.Inode - 4026530000)
		if i == n-1 {
			return NamespaceSummary{}, errors.New("setns: operation not permitted")
		}
		return NamespaceSummary{NS: ns, Sockets: i * 12, Pool: 1000, InUse: i * 10, FreeMin: 1000 - i*10, TimeWait: i, BoundOnly: 1}, nil
	}
	return c
}

// The top N namespaces by ports in use get their own series, labelled with
// name and pod; the rest sum into netns="other"; unread namespaces count.
func TestNamespacesCollectorTopAndOther(t *testing.T) {
	c := fakeNamespaces(6, 2) // readable: 0..4; top 2 by use: 4 and 3
	want := `
# HELP tuple_netns_ephemeral_ports_in_use Ephemeral ports of the namespace's range held by some TCP socket.
# TYPE tuple_netns_ephemeral_ports_in_use gauge
tuple_netns_ephemeral_ports_in_use{container_id="",netns="4026530003",netns_name="",pod_uid=""} 30
tuple_netns_ephemeral_ports_in_use{container_id="",netns="4026530004",netns_name="",pod_uid=""} 40
tuple_netns_ephemeral_ports_in_use{container_id="",netns="other",netns_name="",pod_uid=""} 30
# HELP tuple_netns_namespaces Network namespaces found.
# TYPE tuple_netns_namespaces gauge
tuple_netns_namespaces 6
# HELP tuple_netns_namespaces_unread Network namespaces that could not be read in this scrape.
# TYPE tuple_netns_namespaces_unread gauge
tuple_netns_namespaces_unread 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"tuple_netns_ephemeral_ports_in_use", "tuple_netns_namespaces", "tuple_netns_namespaces_unread"); err != nil {
		t.Error(err)
	}
	// With room for all, the pod's and the named namespace's labels show.
	c = fakeNamespaces(6, 10)
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP tuple_netns_ephemeral_ports_free_min Fewest ports a new connect() to any one destination can still take in the namespace (lower bound).
# TYPE tuple_netns_ephemeral_ports_free_min gauge
tuple_netns_ephemeral_ports_free_min{container_id="",netns="4026530000",netns_name="",pod_uid=""} 1000
tuple_netns_ephemeral_ports_free_min{container_id="",netns="4026530001",netns_name="named",pod_uid=""} 990
tuple_netns_ephemeral_ports_free_min{container_id="",netns="4026530002",netns_name="",pod_uid="0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e"} 980
tuple_netns_ephemeral_ports_free_min{container_id="",netns="4026530003",netns_name="",pod_uid=""} 970
tuple_netns_ephemeral_ports_free_min{container_id="",netns="4026530004",netns_name="",pod_uid=""} 960
`), "tuple_netns_ephemeral_ports_free_min"); err != nil {
		t.Error(err)
	}
}

// Every namespace of a scrape shares one search for bound-only sockets
// (one pass over the host's descriptors on kernels before 6.8, however
// many pods), and the next scrape makes a new one: a scrape never reports
// what a past one found.
func TestNamespacesShareOneSearchPerScrape(t *testing.T) {
	c := fakeNamespaces(5, 10)
	read := c.read
	var mu sync.Mutex
	var seen []*socktab.BoundOnlySearch
	c.read = func(ctx context.Context, ns netns.Namespace, search *socktab.BoundOnlySearch) (NamespaceSummary, error) {
		mu.Lock()
		seen = append(seen, search)
		mu.Unlock()
		return read(ctx, ns, search)
	}
	scrape := func() []*socktab.BoundOnlySearch {
		seen = nil
		if _, err := testutil.CollectAndLint(c); err != nil {
			t.Fatal(err)
		}
		return seen
	}
	first, second := scrape(), scrape()
	if len(first) != 5 || first[0] == nil {
		t.Fatalf("first scrape's searches: %v, want 5 alike, not nil", first)
	}
	if second[0] == first[0] || slices.ContainsFunc(second, func(s *socktab.BoundOnlySearch) bool { return s != second[0] }) {
		t.Errorf("second scrape's searches %v, want one, not the first's %v", second, first[0])
	}
	if slices.ContainsFunc(first, func(s *socktab.BoundOnlySearch) bool { return s != first[0] }) {
		t.Errorf("first scrape's searches %v, want one", first)
	}
}

// What the namespaces' tables lack is logged once per change, each note
// once with how many namespaces said it, and its end is logged too.
func TestNamespacesLogTableNotesOnce(t *testing.T) {
	var logs strings.Builder
	c := newNamespacesCollector(10, 0, slog.New(slog.NewTextHandler(&logs, nil)))
	c.list = func() ([]netns.Namespace, error) {
		return []netns.Namespace{{Inode: 1, Name: "a"}, {Inode: 2, Name: "b"}, {Inode: 3, Name: "c"}}, nil
	}
	var mu sync.Mutex
	lacking := true
	c.read = func(_ context.Context, ns netns.Namespace, _ *socktab.BoundOnlySearch) (NamespaceSummary, error) {
		sum := NamespaceSummary{NS: ns}
		mu.Lock()
		defer mu.Unlock()
		if lacking {
			sum.Notes = []string{socktab.NoteBoundOnlyMissing + ": not root"}
			if ns.Name == "c" {
				sum.Notes = append(sum.Notes, "procfs does not list bound-only TCP sockets")
			}
		}
		return sum, nil
	}
	for range 3 {
		if _, err := testutil.CollectAndLint(c); err != nil {
			t.Fatal(err)
		}
	}
	out := logs.String()
	if n := strings.Count(out, socktab.NoteBoundOnlyMissing); n != 1 {
		t.Errorf("the shared note logged %d times in 3 scrapes, want once:\n%s", n, out)
	}
	for _, want := range []string{"not root (3 namespaces)", "procfs does not list bound-only TCP sockets (namespace c)"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	mu.Lock()
	lacking = false
	mu.Unlock()
	if _, err := testutil.CollectAndLint(c); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "namespaces tables read whole again") {
		t.Errorf("the notes' end not logged:\n%s", logs.String())
	}
}
