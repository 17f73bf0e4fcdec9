package ports

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/leakcheck"
	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// fds closes every descriptor it holds at test cleanup.
type fds []int

func (f *fds) closeAll() {
	for _, fd := range *f {
		// SO_LINGER 0: close with a RST, leaving no TIME_WAIT behind.
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
		unix.Close(fd)
	}
	*f = nil
}

// connect opens a plain TCP connection (no bind) to dst and returns the
// descriptor; errors wrap the errno.
func connect(dst netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("connect", err)
	}
	return fd, nil
}

// connectAccepted connects to dst and accepts the connection on ln.
func connectAccepted(ln int, dst netip.AddrPort) (fd, child int, err error) {
	if fd, err = connect(dst); err != nil {
		return -1, -1, err
	}
	if child, _, err = unix.Accept4(ln, unix.SOCK_CLOEXEC); err != nil {
		unix.Close(fd)
		return -1, -1, os.NewSyscallError("accept", err)
	}
	return fd, child, nil
}

// untilTimeWait budgets ns until it counts n TIME_WAIT entries (a FIN
// exchange is asynchronous), for a second at most.
func untilTimeWait(t *testing.T, ns *netnstest.NS, n int) Report {
	t.Helper()
	var rep Report
	for range 100 {
		var err error
		if rep, err = budgetIn(ns, false, Options{}); err != nil {
			t.Fatal(err)
		}
		if rep.TimeWait == n {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return rep
}

func listen(t *testing.T, held *fds, addr netip.AddrPort) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	*held = append(*held, fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}); err != nil {
		t.Fatalf("bind %v: %v", addr, err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		t.Fatal(err)
	}
}

// hog binds n TCP sockets to 0.0.0.0:0 as uid without listening or
// connecting. sk_uid is the fsuid at socket() time, and setfsuid is per
// thread: this runs on the locked thread ns.Do gives it.
func hog(t *testing.T, held *fds, uid, n int) {
	t.Helper()
	if err := unix.Setfsuid(uid); err != nil {
		t.Fatal(err)
	}
	defer unix.Setfsuid(0)
	// setfsuid returns the previous fsuid; -1 is invalid and changes nothing.
	if got, _ := unix.SetfsuidRetUid(-1); got != uid {
		t.Fatalf("setfsuid(%d): fsuid is %d", uid, got)
	}
	for range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		*held = append(*held, fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
			t.Fatalf("hog bind(0): %v", err)
		}
	}
}

// untilRefused opens connections to dst until the kernel refuses one and
// returns how many it accepted; it fails unless the refusal is
// EADDRNOTAVAIL (the range is exhausted for this destination).
func untilRefused(t *testing.T, held *fds, dst netip.AddrPort) int {
	t.Helper()
	for n := 0; ; n++ {
		fd, err := connect(dst)
		if err != nil {
			if !errors.Is(err, unix.EADDRNOTAVAIL) {
				t.Fatalf("connect %v after %d connections: %v, want EADDRNOTAVAIL", dst, n, err)
			}
			return n
		}
		*held = append(*held, fd)
		if n > 100 {
			t.Fatalf("connect %v: over 100 connections in a 20-port range", dst)
		}
	}
}

// narrowNamespace creates a namespace with 10.0.0.1-3 on lo, the ephemeral
// range narrowed to 40000-40019 and a listener on each of dsts; every
// descriptor it and the test open goes into the returned set, closed at
// cleanup.
func narrowNamespace(t *testing.T, dsts ...netip.AddrPort) (*netnstest.NS, *fds) {
	t.Helper()
	ns := netnstest.New(t, "10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32")
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40019")
	held := new(fds)
	t.Cleanup(held.closeAll)
	if err := ns.Do(func() error {
		for _, d := range dsts {
			listen(t, held, d)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ns, held
}

// budgetIn reads the host and the table from inside the namespace (on the
// thread ns.Do runs) and returns the budget as `tuple ports` makes it
// (Snapshot: the kernel's own records where they can be read).
func budgetIn(ns *netnstest.NS, options bool, opt Options) (Report, error) {
	return budgetWith(ns, options, opt, true)
}

// budgetWith is budgetIn, optionally without the kernel's records: the
// path taken where the BPF iterator cannot run, which reports ranges.
func budgetWith(ns *netnstest.NS, options bool, opt Options, facts bool) (Report, error) {
	var rep Report
	err := ns.Do(func() error {
		host, _, err := hostmodel.ReadHost("")
		if err != nil {
			return err
		}
		var tab *Table
		if facts {
			tab, err = Snapshot(context.Background(), host, "", true, options)
		} else {
			var t *socktab.Table
			t, err = socktab.Snapshot(context.Background(), socktab.Query{TCP: true, Owners: true, Options: options})
			tab = FromTable(host, t, nil)
		}
		if err != nil {
			return err
		}
		rep = tab.Budget(host, opt)
		return nil
	})
	return rep, err
}

// bothBudgets budgets ns twice: with the kernel's records (exact where
// they can be read) and from the socket table alone (ranges).
func bothBudgets(t *testing.T, ns *netnstest.NS, options bool) (exact, table Report) {
	t.Helper()
	exact, err := budgetIn(ns, options, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if table, err = budgetWith(ns, options, Options{}, false); err != nil {
		t.Fatal(err)
	}
	return exact, table
}

// factsReadable reports whether the kernel's socket records can be read
// in ns (root and kernel BTF), so the budget must be exact.
func factsReadable(t *testing.T, ns *netnstest.NS) bool {
	var ok bool
	ns.Do(func() error { ok = ReadFacts() != nil; return nil })
	if !ok {
		t.Log("kernel socket records (sockfacts) not readable here: only the ranges are checked")
	}
	return ok
}

// TestFreePortsMatchKernel: in a namespace with range 40000-40019, two
// destinations in use and uid 65534 holding bound-only ports, the free
// ports Budget reports for each destination are what the kernel then
// allows (connect until EADDRNOTAVAIL), and the hog is reported against
// its uid.
func TestFreePortsMatchKernel(t *testing.T) {
	dst1 := netip.MustParseAddrPort("10.0.0.1:80")
	dst2 := netip.MustParseAddrPort("10.0.0.2:8080")
	dst3 := netip.MustParseAddrPort("10.0.0.3:443") // nobody connects before the count
	const hogUID, hogPorts = 65534, 4
	ns, held := narrowNamespace(t, dst1, dst2, dst3)
	err := ns.Do(func() error {
		for _, c := range []struct {
			dst netip.AddrPort
			n   int
		}{{dst1, 5}, {dst2, 3}} {
			for range c.n {
				fd, err := connect(c.dst)
				if err != nil {
					return err
				}
				*held = append(*held, fd)
			}
		}
		hog(t, held, hogUID, hogPorts)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := budgetIn(ns, false, Options{HogShare: 0.15})
	if err != nil {
		t.Fatal(err)
	}

	free := map[netip.AddrPort]Destination{}
	for _, d := range rep.Destinations {
		free[d.Dest] = d
	}
	d1, d2 := free[dst1], free[dst2]
	if d1.InUse != 5 || d2.InUse != 3 || len(rep.Destinations) != 2 {
		t.Fatalf("destinations %+v, want %v with 5 ports in use and %v with 3", rep.Destinations, dst1, dst2)
	}
	if rep.Range != (inet.PortRange{Lo: 40000, Hi: 40019}) {
		t.Errorf("ReadHost in the namespace: range %v, want 40000-40019", rep.Range)
	}
	if rep.Pool != 20 || rep.BindOwned != hogPorts || rep.BoundOnly != hogPorts {
		t.Errorf("pool %d, bind-owned %d, bound-only %d; want 20, %d, %d", rep.Pool, rep.BindOwned, rep.BoundOnly, hogPorts, hogPorts)
	}

	// The hog, against its uid, and a warning (4 of 20 > 15%).
	var hogRow *Holder
	for i := range rep.UIDs {
		if rep.UIDs[i].UID == hogUID {
			hogRow = &rep.UIDs[i]
		}
	}
	if hogRow == nil || hogRow.Ports != hogPorts || hogRow.BoundOnly != hogPorts {
		t.Errorf("uid %d: %+v, want %d ports, all bound-only (uids %+v)", hogUID, hogRow, hogPorts, rep.UIDs)
	}
	var proc *Holder
	for i := range rep.Processes {
		if rep.Processes[i].UID == hogUID && rep.Processes[i].PID == os.Getpid() {
			proc = &rep.Processes[i]
		}
	}
	if proc == nil || proc.BoundOnly != hogPorts {
		t.Errorf("no process row for the hog (pid %d): %+v", os.Getpid(), rep.Processes)
	}
	wantWarning := fmt.Sprintf("uid %d holds %d of 20 ephemeral ports (20%%, over 15%%); %d of its sockets are bound without listen() or connect()", hogUID, hogPorts, hogPorts)
	if !slices.Contains(rep.Warnings, wantWarning) {
		t.Errorf("warnings %q, want %q", rep.Warnings, wantWarning)
	}

	// Now the kernel's answer: connect until it refuses. Connect-picked
	// ports are shared across destinations, so one count does not disturb
	// the next.
	var got1, got2, got3 int
	if err := ns.Do(func() error {
		got1 = untilRefused(t, held, dst1)
		got2 = untilRefused(t, held, dst2)
		got3 = untilRefused(t, held, dst3)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dst      netip.AddrPort
		min, max int
		kernel   int
	}{
		{dst1, d1.FreeMin, d1.FreeMax, got1},
		{dst2, d2.FreeMin, d2.FreeMax, got2},
		{dst3, rep.ConnectFreeMin, rep.ConnectFreeMax, got3},
	} {
		t.Logf("%v: reported free %d..%d, kernel allowed %d", c.dst, c.min, c.max, c.kernel)
		// Every port here was picked by connect(), the upper bound's
		// assumption, so the kernel must give exactly the upper bound.
		if c.kernel != c.max || c.min > c.max {
			t.Errorf("%v: reported free %d..%d, kernel allowed %d connections", c.dst, c.min, c.max, c.kernel)
		}
	}
	// Without the hog the kernel would have allowed hogPorts more: the
	// hog's ports are in neither bound.
	if want := 20 - hogPorts - 5; got1 != want {
		t.Errorf("kernel allowed %d more connections to %v, want 20 - %d hogged - 5 in use = %d", got1, dst1, hogPorts, want)
	}
}

// dialFrom connects to dst from src: with noPort, bind(src:0) under
// IP_BIND_ADDRESS_NO_PORT (connect() picks the port); otherwise
// bind(src:port) first (the port is bind()'s).
func dialFrom(src netip.AddrPort, dst netip.AddrPort, noPort bool) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if noPort {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
			unix.Close(fd)
			return -1, os.NewSyscallError("setsockopt", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(src.Port()), Addr: src.Addr().As4()}); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("bind", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("connect", err)
	}
	return fd, nil
}

// TestFreePortsBracketKernel: live options tell IP_BIND_ADDRESS_NO_PORT
// connections apart (their ports are connect()'s, so their destination's
// count is exact), while a connection bound explicitly to a port of the
// range looks like any other connected socket: the table cannot tell it
// from a connect-picked one, so the report gives a range, and the kernel,
// which skips that bind()-owned port for every destination, lands on its
// lower end.
func TestFreePortsBracketKernel(t *testing.T) {
	dst1 := netip.MustParseAddrPort("10.0.0.1:80")
	dst2 := netip.MustParseAddrPort("10.0.0.2:80")
	dst3 := netip.MustParseAddrPort("10.0.0.3:80")
	ns, held := narrowNamespace(t, dst1, dst2, dst3)
	err := ns.Do(func() error {
		for range 4 {
			fd, err := dialFrom(netip.MustParseAddrPort("10.0.0.1:0"), dst1, true)
			if err != nil {
				return err
			}
			*held = append(*held, fd)
		}
		fd, err := dialFrom(netip.MustParseAddrPort("10.0.0.2:40007"), dst2, false)
		if err != nil {
			return err
		}
		*held = append(*held, fd)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	exact, rep := bothBudgets(t, ns, true)
	if rep.UnknownOrigin != 1 {
		t.Errorf("%d ports of unknown origin, want 1 (the explicitly bound connection's)", rep.UnknownOrigin)
	}
	var d1 Destination
	for _, d := range rep.Destinations {
		if d.Dest == dst1 {
			d1 = d
		}
	}
	var got1, got3 int
	if err := ns.Do(func() error {
		got1 = untilRefused(t, held, dst1)
		got3 = untilRefused(t, held, dst3)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: reported %d..%d, kernel %d; new destination: reported %d..%d, kernel %d",
		dst1, d1.FreeMin, d1.FreeMax, got1, rep.ConnectFreeMin, rep.ConnectFreeMax, got3)
	// 20 ports - 4 connect-picked for dst1 - 1 bound explicitly.
	if d1.InUse != 4 || d1.FreeMin != 15 || d1.FreeMax != 16 || got1 != d1.FreeMin {
		t.Errorf("%v: %d in use, reported %d..%d, kernel %d; want 4 in use, 15..16 and the kernel at 15", dst1, d1.InUse, d1.FreeMin, d1.FreeMax, got1)
	}
	if rep.ConnectFreeMin != 19 || rep.ConnectFreeMax != 20 || got3 != rep.ConnectFreeMin {
		t.Errorf("new destination: reported %d..%d, kernel %d; want 19..20 and the kernel at 19", rep.ConnectFreeMin, rep.ConnectFreeMax, got3)
	}
	// With the kernel's own records the port origin is known: exact.
	if factsReadable(t, ns) {
		var e1 Destination
		for _, d := range exact.Destinations {
			if d.Dest == dst1 {
				e1 = d
			}
		}
		if exact.UnknownOrigin != 0 || e1.FreeMin != got1 || e1.FreeMax != got1 || exact.ConnectFreeMin != got3 || exact.ConnectFreeMax != got3 {
			t.Errorf("with kernel records: %d unknown, %v reported %d..%d, new destination %d..%d; want 0 unknown and exactly the kernel's %d and %d",
				exact.UnknownOrigin, dst1, e1.FreeMin, e1.FreeMax, exact.ConnectFreeMin, exact.ConnectFreeMax, got1, got3)
		}
	}
}

// TestTimeWaitMatchesKernel: TIME_WAIT entries block their own four-tuple
// when tcp_tw_reuse is 0 (the report is exact and the kernel agrees); with
// tcp_tw_reuse 1 and the delay passed, a new connect() may take them over
// if the peer used timestamps, which the table cannot show: the report
// gives a range and the kernel (timestamps on by default) lands on its
// upper end.
func TestTimeWaitMatchesKernel(t *testing.T) {
	dst := netip.MustParseAddrPort("10.0.0.1:80")
	ns, held := narrowNamespace(t, dst)
	ns.Sysctl(t, "net.ipv4.tcp_tw_reuse", "0")
	const tw, live = 5, 2
	err := ns.Do(func() error {
		ln := (*held)[0]
		for i := range tw + live {
			fd, child, err := connectAccepted(ln, dst)
			if err != nil {
				return err
			}
			if i >= tw {
				*held = append(*held, fd, child)
				continue
			}
			// The client closes first, so the client side ends in
			// TIME_WAIT once the server closes too.
			unix.Close(fd)
			unix.Close(child)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := untilTimeWait(t, ns, tw)
	if rep.TimeWait != tw || len(rep.Destinations) != 1 {
		t.Fatalf("%d TIME_WAIT, destinations %+v; want %d TIME_WAIT to %v", rep.TimeWait, rep.Destinations, tw, dst)
	}
	d := rep.Destinations[0]
	if d.TimeWait != tw || d.InUse != live || d.NextExpiry <= 0 || d.NextExpiry > TimeWaitLength {
		t.Errorf("destination %+v: want %d TIME_WAIT with an expiry, %d in use", d, tw, live)
	}
	var got int
	if err := ns.Do(func() error {
		var counted fds
		got = untilRefused(t, &counted, dst)
		counted.closeAll() // RST: no new TIME_WAIT
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("tcp_tw_reuse=0: reported %d..%d, kernel %d", d.FreeMin, d.FreeMax, got)
	if want := 20 - tw - live; d.FreeMin != want || d.FreeMax != want || got != want {
		t.Errorf("tcp_tw_reuse=0: reported %d..%d, kernel %d; want %d for all", d.FreeMin, d.FreeMax, got, want)
	}

	ns.Sysctl(t, "net.ipv4.tcp_tw_reuse", "1")
	time.Sleep(1500 * time.Millisecond) // past tcp_tw_reuse_delay (1 s)
	exact, rep := bothBudgets(t, ns, false)
	d = rep.Destinations[0]
	if err := ns.Do(func() error {
		got = untilRefused(t, held, dst)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("tcp_tw_reuse=1: reported %d..%d, kernel %d", d.FreeMin, d.FreeMax, got)
	if d.FreeMin != 20-tw-live || d.FreeMax != 20-live || got != d.FreeMax {
		t.Errorf("tcp_tw_reuse=1: reported %d..%d, kernel %d; want %d..%d and the kernel at %d", d.FreeMin, d.FreeMax, got, 20-tw-live, 20-live, 20-live)
	}
	// The kernel's records say the peers used timestamps: exact.
	if e := exact.Destinations[0]; factsReadable(t, ns) && (e.FreeMin != got || e.FreeMax != got) {
		t.Errorf("tcp_tw_reuse=1 with kernel records: reported %d..%d, kernel %d; want exactly the kernel's", e.FreeMin, e.FreeMax, got)
	}
}

// TestFinWait2EntriesMatchKernel: the TIME_WAIT entries of orphans that
// never got their peer's FIN (substate FIN_WAIT2) keep their ports even with
// tcp_tw_reuse on, since connect() never takes such an entry over. The
// budget counts them as taken, from the kernel's records and from the
// table alike, as the kernel does. Such an entry lasts tcp_fin_timeout,
// not the 60 s of TIME_WAIT: the next expiry says so; and it is counted in
// the state inet_diag shows it in, FIN-WAIT-2.
func TestFinWait2EntriesMatchKernel(t *testing.T) {
	dst := netip.MustParseAddrPort("10.0.0.1:80")
	ns, held := narrowNamespace(t, dst)
	ns.Sysctl(t, "net.ipv4.tcp_tw_reuse", "1")
	ns.Sysctl(t, "net.ipv4.tcp_fin_timeout", "30")
	const orphans = 4
	err := ns.Do(func() error {
		ln := (*held)[0]
		for range orphans {
			fd, child, err := connectAccepted(ln, dst)
			if err != nil {
				return err
			}
			*held = append(*held, child) // never closed: no FIN for the client
			unix.Close(fd)               // an orphan, FIN_WAIT2 once its FIN is acked
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	untilTimeWait(t, ns, orphans)
	time.Sleep(1500 * time.Millisecond) // past tcp_tw_reuse_delay (1 s)
	exact, table := bothBudgets(t, ns, false)
	var got int
	if err := ns.Do(func() error {
		got = untilRefused(t, held, dst)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := 20 - orphans
	for _, r := range []struct {
		name string
		rep  Report
	}{{"kernel records", exact}, {"table", table}} {
		if r.rep.TimeWait != orphans || len(r.rep.Destinations) != 1 {
			t.Errorf("%s: %d TIME_WAIT, destinations %+v; want %d entries to %v", r.name, r.rep.TimeWait, r.rep.Destinations, orphans, dst)
			continue
		}
		if d := r.rep.Destinations[0]; d.FreeMin != want || d.FreeMax != want {
			t.Errorf("%s: reported %d..%d free beside %d FIN_WAIT2 entries, want %d", r.name, d.FreeMin, d.FreeMax, orphans, want)
		}
		if d := r.rep.Destinations[0]; d.NextExpiry <= 0 || d.NextExpiry > 30*time.Second {
			t.Errorf("%s: next expiry %v, want within tcp_fin_timeout (30 s)", r.name, d.NextExpiry)
		}
	}
	if factsReadable(t, ns) {
		var tab *Table
		if err := ns.Do(func() (err error) {
			host, _, err := hostmodel.ReadHost("")
			if err == nil {
				tab, err = Snapshot(context.Background(), host, "", false, false)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if tab.Entries == nil && (tab.Counts[socktab.FinWait2] != orphans || tab.Counts[socktab.TimeWait] != 0) {
			t.Errorf("kernel records: %d FIN-WAIT-2, %d TIME-WAIT; want %d and 0, as inet_diag shows them", tab.Counts[socktab.FinWait2], tab.Counts[socktab.TimeWait], orphans)
		}
	}
	if got != want {
		t.Errorf("the kernel allowed %d connections beside %d FIN_WAIT2 entries in a 20-port range, want %d", got, orphans, want)
	}
}

// TestOddRangeWithinBounds: with an odd-sized range the kernel visits one
// port fewer than the range holds, and which one depends on its random
// start; with one port hogged the count is one of two values, and the
// report's range must hold the kernel's answer every time.
func TestOddRangeWithinBounds(t *testing.T) {
	dst := netip.MustParseAddrPort("10.0.0.1:80")
	for i := range 3 {
		ns, held := narrowNamespace(t, dst)
		ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40010")
		if err := ns.Do(func() error { hog(t, held, 65534, 1); return nil }); err != nil {
			t.Fatal(err)
		}
		rep, err := budgetIn(ns, false, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := ns.Do(func() error { got = untilRefused(t, held, dst); return nil }); err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d: range 40000-40010, one port hogged: reported %d..%d, kernel %d", i, rep.ConnectFreeMin, rep.ConnectFreeMax, got)
		if rep.Pool != 11 || rep.ConnectPool != 10 || rep.ConnectFreeMin != 9 || rep.ConnectFreeMax != 10 {
			t.Errorf("pool %d, connect pool %d, free %d..%d; want 11, 10, 9..10", rep.Pool, rep.ConnectPool, rep.ConnectFreeMin, rep.ConnectFreeMax)
		}
		if got < rep.ConnectFreeMin || got > rep.ConnectFreeMax {
			t.Errorf("kernel allowed %d, outside the reported %d..%d", got, rep.ConnectFreeMin, rep.ConnectFreeMax)
		}
	}
}

// TestReaderMatchesTable: the budget from the kernel's records alone
// (Reader: one walk, no socket table but for bound-only sockets and
// TIME_WAIT timers) is the budget from the socket table joined with the
// same records (SnapshotTable), on a namespace with listeners, accepted
// and unaccepted children, connections from fixed and picked ports,
// TIME_WAIT entries, bound-only sockets of another uid and IPv6: every
// count, destination, holder and process the same.
func TestReaderMatchesTable(t *testing.T) {
	dst1, dst2 := netip.MustParseAddrPort("10.0.0.1:80"), netip.MustParseAddrPort("10.0.0.2:443")
	ns, held := narrowNamespace(t, dst1, dst2)
	if !factsReadable(t, ns) {
		t.Skip("kernel socket records not readable: Reader cannot run")
	}
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40059")
	ns.Sysctl(t, "net.ipv4.tcp_tw_reuse", "1")
	err := ns.Do(func() error {
		for i := range 12 {
			dst := dst1
			if i%3 == 0 {
				dst = dst2
			}
			fd, err := connect(dst)
			if err != nil {
				return err
			}
			if i < 4 {
				// Accepted and closed by the client first: TIME_WAIT.
				ln := (*held)[0]
				if dst == dst2 {
					ln = (*held)[1]
				}
				child, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
				if err != nil {
					return os.NewSyscallError("accept", err)
				}
				unix.Close(fd)
				unix.Close(child)
				continue
			}
			*held = append(*held, fd)
		}
		// A client bound to a fixed port in the range, one outside it.
		for _, port := range []int{40050, 30000} {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			*held = append(*held, fd)
			if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{10, 0, 0, 3}, Port: port}); err != nil {
				return err
			}
			if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst1.Addr().As4(), Port: 80}); err != nil {
				return err
			}
		}
		// An IPv6 listener and its client.
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		*held = append(*held, fd)
		if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: netip.IPv6Loopback().As16(), Port: 8080}); err != nil {
			return err
		}
		if err := unix.Listen(fd, 8); err != nil {
			return err
		}
		c6, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		*held = append(*held, c6)
		if err := unix.Connect(c6, &unix.SockaddrInet6{Addr: netip.IPv6Loopback().As16(), Port: 8080}); err != nil {
			return err
		}
		hog(t, held, 65534, 5)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The FIN exchanges, and past tcp_tw_reuse_delay (1 s): the entries'
	// reusability must not change between the two reads.
	time.Sleep(1500 * time.Millisecond)
	var fast, slow, bare, late Report
	var tab *Table
	keptLate := 0         // accepted connections the late-settings read kept
	var accepted []string // accepted connections among the budget's sockets
	wantReusable := 0     // TIME_WAIT entries connect() may take over
	if err := ns.Do(func() error {
		host, _, err := hostmodel.ReadHost("")
		if err != nil {
			return err
		}
		r, err := NewReader()
		if err != nil {
			return err
		}
		defer r.Close()
		if tab, err = r.Read(context.Background(), host, "", true); err != nil {
			return err
		}
		fast = tab.Budget(host, Options{})
		// Read before the next Read reuses the table: the connections
		// accepted on ports no search visits are counted only (none is
		// one of the budget's sockets), and every TIME_WAIT entry is
		// reusable but one whose port connect() skips: the client bound
		// to port 40050 marks that port's bucket as taken through bind(),
		// and connect() picked the entries' ports at random.
		for _, s := range tab.cols.socks {
			if p := s.Local.Port(); s.State == rules.Connected && (p == 80 || p == 443 || p == 8080) {
				accepted = append(accepted, s.Local.String()+" -> "+s.Remote.String())
			}
			if s.State == rules.TimeWait && s.Local.Port() != 40050 {
				wantReusable++
			}
		}
		// The same Reader without owners loads its program that reads
		// no inodes: the same budget, no processes.
		bt, err := r.Read(context.Background(), host, "", false)
		if err != nil {
			return err
		}
		bare = bt.Budget(host, Options{})
		old, err := SnapshotTable(context.Background(), host, "", true, false)
		if err != nil {
			return err
		}
		slow = old.Budget(host, Options{})
		// Settings that come only after the walk (ReadWith): the
		// decoder, which does not wait for them, keeps the accepted
		// connections, and the budget is the same.
		lt, err := r.ReadWith(context.Background(), func() (rules.Host, error) {
			time.Sleep(time.Second)
			return host, nil
		}, "", false)
		if err != nil {
			return err
		}
		for _, s := range lt.cols.socks {
			if p := s.Local.Port(); s.State == rules.Connected && (p == 80 || p == 443 || p == 8080) {
				keptLate++
			}
		}
		late = lt.Budget(host, Options{})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(tab.Entries) != 0 || tab.cols.socks == nil {
		t.Fatalf("Reader's table is not its columns: %d entries", len(tab.Entries))
	}
	for _, a := range accepted {
		t.Errorf("accepted connection %s is in the budget's sockets", a)
	}
	if fast.TimeWait != 4 || fast.BoundOnly != 5 || len(fast.Processes) == 0 || len(fast.Destinations) < 3 {
		t.Errorf("the namespace is not what the test built: %+v", fast)
	}
	reusable := 0
	for _, d := range fast.Destinations {
		reusable += d.TimeWaitReusable
	}
	if reusable != wantReusable || wantReusable < 2 {
		// Each entry's age comes from its timer in the socket table.
		t.Errorf("%d TIME_WAIT entries reusable (tcp_tw_reuse=1, 1.5 s old), want %d", reusable, wantReusable)
	}
	// NextExpiry is read at two moments, the second one later.
	for i := range fast.Destinations {
		f := &fast.Destinations[i]
		if i < len(slow.Destinations) {
			if sl := slow.Destinations[i]; f.NextExpiry >= sl.NextExpiry && f.NextExpiry-sl.NextExpiry < time.Second {
				f.NextExpiry, f.NextExpirySeconds = sl.NextExpiry, sl.NextExpirySeconds
			}
		}
	}
	if a, b := fmt.Sprintf("%+v", fast), fmt.Sprintf("%+v", slow); a != b {
		t.Errorf("Reader's budget differs from the table's:\nreader %s\ntable  %s", a, b)
	}
	if len(bare.Processes) != 0 {
		t.Errorf("a read without owners found processes %+v", bare.Processes)
	}
	// likeFast takes fast's owners and expiry times (read at another
	// moment) into r, to compare the rest.
	likeFast := func(r *Report) string {
		r.Processes = fast.Processes
		for i := range r.Destinations {
			if i < len(fast.Destinations) {
				r.Destinations[i].NextExpiry, r.Destinations[i].NextExpirySeconds = fast.Destinations[i].NextExpiry, fast.Destinations[i].NextExpirySeconds
			}
		}
		return fmt.Sprintf("%+v", *r)
	}
	if a, b := likeFast(&bare), fmt.Sprintf("%+v", fast); a != b {
		t.Errorf("the budget without owners differs:\nwithout %s\nwith    %s", a, b)
	}
	if keptLate == 0 {
		t.Errorf("the read whose settings came after the walk dropped the accepted connections: it did not decode without them")
	}
	if a, b := likeFast(&late), fmt.Sprintf("%+v", fast); a != b {
		t.Errorf("the budget with the settings read after the walk differs:\nlate %s\nwith %s", a, b)
	}
	if n := tab.Counts[socktab.TimeWait] + tab.Counts[socktab.BoundInactive] + tab.Counts[socktab.Listen] + tab.Counts[socktab.Established]; n != 4+5+3+2*(8+2+1) {
		t.Errorf("counts %v: want 4 TIME_WAIT, 5 bound, 3 listening, 22 established", tab.Counts)
	}
}
