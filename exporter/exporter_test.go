package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/leakcheck"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// fixture is a namespace with range 40000-40019: uid 1000 connected from
// 127.0.0.1 to nDests destinations (destination i gets i+1 connections),
// uid 65534 holding 12 ports bound without connecting, one listener, two
// TIME_WAIT entries and one UDP socket.
func fixture(nDests int) Input {
	h := rules.DefaultHost()
	h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40019}
	t := &socktab.Table{Source: "fixture"}
	add := func(s socktab.Socket) { t.Sockets = append(t.Sockets, s) }
	src := netip.MustParseAddr("127.0.0.1")
	for i := range nDests {
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), 80)
		for j := range i + 1 {
			add(socktab.Socket{Proto: inet.TCP, Family: inet.IPv4, State: socktab.Established,
				Local: netip.AddrPortFrom(src, uint16(40012+j%8)), Remote: dst, UID: 1000})
		}
	}
	for p := uint16(40000); p < 40012; p++ {
		add(socktab.Socket{Proto: inet.TCP, Family: inet.IPv4, State: socktab.BoundInactive,
			Local: netip.AddrPortFrom(netip.IPv4Unspecified(), p), UID: 65534})
	}
	add(socktab.Socket{Proto: inet.TCP, Family: inet.IPv4, State: socktab.Listen, Local: netip.MustParseAddrPort("0.0.0.0:80")})
	for range 2 {
		add(socktab.Socket{Proto: inet.TCP, Family: inet.IPv4, State: socktab.TimeWait,
			Local: netip.MustParseAddrPort("127.0.0.1:40019"), Remote: netip.MustParseAddrPort("10.0.9.9:80")})
	}
	add(socktab.Socket{Proto: inet.UDP, Family: inet.IPv4, State: socktab.Close, Local: netip.MustParseAddrPort("0.0.0.0:53")})
	return Input{Table: t, Host: h}
}

func staticSource(in Input) Source {
	return SourceFunc(func(context.Context) Input { return in })
}

func gather(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			fmt.Fprintf(&b, "%s{%s} %g\n", mf.GetName(), strings.Join(labels, ","), v)
		}
	}
	return b.String()
}

func TestExporterMetrics(t *testing.T) {
	out := gather(t, New(staticSource(fixture(3)), Options{Top: 10}))
	for _, want := range []string{
		`tuple_ephemeral_ports{} 20`,
		// 12 ports bound-only; three destinations use 40012.., origin unknown.
		`tuple_ephemeral_ports_bind_owned{} 12`,
		`tuple_ephemeral_ports_unknown_origin{} 4`, // 40012-40014 and TIME_WAIT's 40019
		`tuple_ephemeral_ports_in_use{destination="10.0.1.2:80",source="127.0.0.1"} 3`,
		`tuple_ephemeral_ports_free{bound="upper",destination="10.0.1.2:80",source="127.0.0.1"} 5`,
		`tuple_ephemeral_ports_free{bound="lower",destination="10.0.1.2:80",source="127.0.0.1"} 4`,
		`tuple_ephemeral_ports_free{bound="upper",destination="*",source="*"} 8`,
		`tuple_ephemeral_ports_bind_free{} 4`,
		`tuple_sockets{proto="tcp",state="bound"} 12`,
		`tuple_sockets{proto="tcp",state="established"} 6`,
		`tuple_sockets{proto="udp",state="close"} 1`,
		`tuple_time_wait_sockets{} 2`,
		`tuple_bound_only_sockets{uid="65534"} 12`,
		`tuple_ephemeral_ports_held{uid="65534"} 12`,
		`tuple_ephemeral_ports_held_ratio{} 0.6`,
		`tuple_scrape_collector_success{collector="ephemeral"} 1`,
		`tuple_scrape_collector_success{collector="sockets"} 1`,
		`tuple_scrape_collector_success{collector="holders"} 1`,
		`tuple_scrapes_total{} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

func TestExporterBoundedCardinality(t *testing.T) {
	out := gather(t, New(staticSource(fixture(30)), Options{Top: 5}))
	if n := strings.Count(out, "tuple_ephemeral_ports_in_use{"); n != 6 {
		t.Errorf("in_use series = %d, want 5 destinations + other", n)
	}
	// The top 5 by fewest free are the destinations with 8 connections
	// (ports 40012-40019 all used; 22 of them); "other" sums the other 25.
	// Destinations i>=7 use 8 ports each, i<7 use i+1.
	other := 0
	for i := range 30 {
		other += min(i+1, 8)
	}
	other -= 5 * 8
	if want := fmt.Sprintf(`tuple_ephemeral_ports_in_use{destination="other",source="other"} %d`, other); !strings.Contains(out, want) {
		t.Errorf("missing %s in\n%s", want, out)
	}
}

func TestExporterFailedCollectorsAreMetrics(t *testing.T) {
	in := fixture(1)
	in.HostErr = errors.New("sysctl unreadable")
	out := gather(t, New(staticSource(in), Options{}))
	for _, want := range []string{
		`tuple_scrape_collector_success{collector="ephemeral"} 0`,
		`tuple_scrape_collector_success{collector="holders"} 0`,
		`tuple_scrape_collector_success{collector="sockets"} 1`,
		`tuple_scrape_collector_errors_total{collector="ephemeral"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	if strings.Contains(out, "tuple_ephemeral_ports{") {
		t.Errorf("ephemeral metrics exported despite failure")
	}

	out = gather(t, New(staticSource(Input{TableErr: errors.New("netlink: permission denied")}), Options{}))
	if !strings.Contains(out, `tuple_scrape_collector_success{collector="sockets"} 0`) {
		t.Errorf("table failure not reported:\n%s", out)
	}

	e := New(staticSource(fixture(1)), Options{})
	e.collectors = append(e.collectors, namedCollector{"broken", panicking{}})
	out = gather(t, e)
	if !strings.Contains(out, `tuple_scrape_collector_success{collector="broken"} 0`) ||
		!strings.Contains(out, `tuple_scrape_collector_success{collector="sockets"} 1`) {
		t.Errorf("panicking collector not isolated:\n%s", out)
	}
}

type panicking struct{}

func (panicking) describe(chan<- *prometheus.Desc) {}
func (panicking) update(*snapshot, chan<- prometheus.Metric) error {
	panic("a collector bug")
}

// Concurrent scrapes share one snapshot (singleflight) instead of reading
// the socket table one after another.
func TestExporterConcurrentScrapes(t *testing.T) {
	var reads, inFlight, maxInFlight atomic.Int32
	release := make(chan struct{})
	src := SourceFunc(func(context.Context) Input {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		reads.Add(1)
		<-release // a slow table: every scrape arrives while it is read
		return fixture(3)
	})
	e := New(src, Options{MaxAge: -1})
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	const scrapes = 16
	var wg sync.WaitGroup
	for range scrapes {
		wg.Go(func() {
			// Three destinations with connections, one with TIME_WAIT only.
			if n, err := testutil.GatherAndCount(reg, "tuple_ephemeral_ports_in_use"); err != nil || n != 4 {
				t.Errorf("concurrent scrape: %d in_use series, %v", n, err)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	close(release)
	wg.Wait()
	if r := reads.Load(); r < 1 || r > 2 {
		t.Errorf("%d snapshots for %d concurrent scrapes, want them shared", r, scrapes)
	}
	if maxInFlight.Load() != 1 {
		t.Errorf("%d snapshots ran at once, want 1", maxInFlight.Load())
	}
}

// Scrapes following each other within MaxAge (pipelined requests, a
// burst) reuse the latest snapshot; after MaxAge a new one is read.
func TestExporterReusesRecentSnapshot(t *testing.T) {
	var reads atomic.Int32
	src := SourceFunc(func(context.Context) Input { reads.Add(1); return fixture(1) })
	const maxAge = 2 * time.Second
	e := New(src, Options{MaxAge: maxAge})
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	start := time.Now()
	scrapes := 0
	for ; scrapes < 50 && time.Since(start) < maxAge/2; scrapes++ {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("%d snapshots for %d scrapes within MaxAge, want 1", n, scrapes)
	}
	time.Sleep(maxAge)
	reg.Gather()
	if n := reads.Load(); n != 2 {
		t.Errorf("%d snapshots after MaxAge passed, want 2", n)
	}
}

// Regression: sysctls read at their defaults, or not at all, were silent.
func TestExporterSaysWhenSysctlsFellBack(t *testing.T) {
	in := fixture(1)
	in.HostNotes = []string{"net.ipv4.tcp_tw_reuse_delay not present; using the kernel default"}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	out := gather(t, New(staticSource(in), Options{Log: log}))
	for _, want := range []string{
		`tuple_sysctl_fallback{sysctl="net.ipv4.tcp_tw_reuse_delay"} 1`,
		`tuple_sysctls_read{} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	if logged := strings.Split(strings.TrimSpace(logs.String()), "\n"); len(logged) != 1 || !strings.Contains(logged[0], "tcp_tw_reuse_delay") {
		t.Errorf("logged %q, want one line naming the sysctl", logged)
	}
	in.HostErr = errors.New("net.ipv4.ip_local_port_range unreadable")
	logs.Reset()
	out = gather(t, New(staticSource(in), Options{Log: log}))
	if !strings.Contains(out, "tuple_sysctls_read{} 0\n") || !strings.Contains(out, `tuple_scrape_collector_success{collector="ephemeral"} 0`) {
		t.Errorf("unreadable sysctls not reported:\n%s", out)
	}
	if n := strings.Count(logs.String(), "sysctls unreadable"); n != 1 || !strings.Contains(logs.String(), "ip_local_port_range unreadable") {
		t.Errorf("logged %q, want the failure once", logs.String())
	}
}

// What the socket table says it lacks (here: bound-only sockets a kernel
// before 6.8 cannot list) is logged once, not at every scrape, and its end
// is logged too.
func TestExporterLogsTableNotesOnce(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	in := fixture(1)
	in.Table.Notes = []string{socktab.NoteBoundOnlyMissing + ": not root"}
	src := SourceFunc(func(context.Context) Input { mu.Lock(); defer mu.Unlock(); return in })
	e := New(src, Options{MaxAge: -1, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	for range 3 {
		gather(t, e)
	}
	if n := strings.Count(logs.String(), socktab.NoteBoundOnlyMissing); n != 1 {
		t.Errorf("the table's note logged %d times in 3 scrapes, want once:\n%s", n, logs.String())
	}
	mu.Lock()
	in = fixture(1)
	mu.Unlock()
	gather(t, e)
	if !strings.Contains(logs.String(), "socket table read whole again") {
		t.Errorf("the note's end not logged:\n%s", logs.String())
	}
}

func TestExporterUIDsBeyondTopAreOther(t *testing.T) {
	out := gather(t, New(staticSource(fixture(3)), Options{Top: 1}))
	for _, want := range []string{
		`tuple_ephemeral_ports_held{uid="65534"} 12`,
		`tuple_bound_only_sockets{uid="65534"} 12`,
		// uid 1000's three connect-picked ports plus uid 0's listener
		// (port 80, outside the range).
		`tuple_ephemeral_ports_held{uid="other"} 3`,
		`tuple_bound_only_sockets{uid="other"} 0`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	if n := strings.Count(out, "tuple_ephemeral_ports_held{"); n != 2 {
		t.Errorf("%d held series with --top 1, want 2:\n%s", n, out)
	}
}

// A collector that fails every scrape is logged once per change of its
// error, with its recovery; unreadable kernel records are logged the same
// way, since the budget silently turns into ranges without them.
func TestExporterLogsFailuresOnce(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	in := Input{TableErr: errors.New("netlink: permission denied"), FactsErr: errors.New("kernel socket records: not supported")}
	src := SourceFunc(func(context.Context) Input { mu.Lock(); defer mu.Unlock(); return in })
	e := New(src, Options{MaxAge: -1, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	for range 3 {
		gather(t, e)
	}
	if n := strings.Count(logs.String(), `msg="sockets collector failed"`); n != 1 {
		t.Errorf("sockets failure logged %d times in 3 scrapes, want once:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), `msg="kernel-facts collector failed"`); n != 1 {
		t.Errorf("kernel records failure logged %d times in 3 scrapes, want once:\n%s", n, logs.String())
	}
	mu.Lock()
	in.TableErr = errors.New("netlink: no buffer space")
	mu.Unlock()
	gather(t, e)
	if n := strings.Count(logs.String(), `msg="sockets collector failed"`); n != 2 {
		t.Errorf("a changed error not logged again (%d lines):\n%s", n, logs.String())
	}
	mu.Lock()
	in = fixture(1)
	mu.Unlock()
	gather(t, e)
	for _, want := range []string{`msg="sockets collector recovered"`, `msg="kernel-facts collector recovered"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
}
