package exporter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tuple-net/tuple/nat"
	"github.com/tuple-net/tuple/sockopt"
)

// natFixture has one SNAT rule with 10 ports and translated flows to three
// destinations: 7, 3 and 1 ports in use.
func natFixture() nat.Snapshot {
	rule := nat.Rule{ToMin: netip.MustParseAddr("198.51.100.1"), ToMax: netip.MustParseAddr("198.51.100.1"),
		Ports: sockopt.PortRange{Lo: 40000, Hi: 40009}}
	s := nat.Snapshot{Rules: []nat.Rule{rule}, Counters: nat.Counters{InsertFailed: 4, Drop: 2, EarlyDrop: 1}}
	for dest, n := range map[string]int{"198.51.100.2:80": 7, "198.51.100.3:80": 3, "198.51.100.4:443": 1} {
		for i := range n {
			d := netip.MustParseAddrPort(dest)
			s.Flows = append(s.Flows, nat.Flow{Proto: 6, SrcNAT: true,
				Orig:  nat.Tuple{Src: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), uint16(50000+i)), Dst: d},
				Reply: nat.Tuple{Src: d, Dst: netip.AddrPortFrom(rule.ToMin, uint16(40000+i))}})
		}
	}
	return s
}

func TestNATCollectorMetrics(t *testing.T) {
	c := NewNATCollector(func(context.Context) (nat.Snapshot, error) { return natFixture(), nil }, 2, 0, nil)
	want := `
# HELP tuple_nat_ports_free Ports the source-NAT rule can still hand out towards a destination on a NAT address.
# TYPE tuple_nat_ports_free gauge
tuple_nat_ports_free{destination="198.51.100.2:80",nat_address="198.51.100.1",proto="tcp"} 3
tuple_nat_ports_free{destination="198.51.100.3:80",nat_address="198.51.100.1",proto="tcp"} 7
# HELP tuple_nat_ports_in_use Ports of the source-NAT rule's range held towards a destination on a NAT address (conntrack).
# TYPE tuple_nat_ports_in_use gauge
tuple_nat_ports_in_use{destination="198.51.100.2:80",nat_address="198.51.100.1",proto="tcp"} 7
tuple_nat_ports_in_use{destination="198.51.100.3:80",nat_address="198.51.100.1",proto="tcp"} 3
tuple_nat_ports_in_use{destination="other",nat_address="198.51.100.1",proto="tcp"} 1
# HELP tuple_conntrack_insert_failed_total Connections dropped because their (translated) tuple clashed at conntrack insertion, all CPUs.
# TYPE tuple_conntrack_insert_failed_total counter
tuple_conntrack_insert_failed_total 4
# HELP tuple_nat_scrape_success 1 when the NAT rules and conntrack table were read in this scrape, 0 when not.
# TYPE tuple_nat_scrape_success gauge
tuple_nat_scrape_success 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"tuple_nat_ports_free", "tuple_nat_ports_in_use", "tuple_conntrack_insert_failed_total", "tuple_nat_scrape_success"); err != nil {
		t.Error(err)
	}
}

// A failing read reports success 0 and is logged once per change of error,
// not once per scrape; recovery is logged too.
func TestNATCollectorLogsFailuresOnce(t *testing.T) {
	var logs bytes.Buffer
	err := errors.New("conntrack: operation not permitted")
	c := NewNATCollector(func(context.Context) (nat.Snapshot, error) { return nat.Snapshot{}, err }, 0, 0,
		slog.New(slog.NewTextHandler(&logs, nil)))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	for range 3 {
		if got := testutil.ToFloat64(c.upOnly()); got != 0 {
			t.Fatalf("success = %v, want 0", got)
		}
	}
	if n := strings.Count(logs.String(), "nat collector failed"); n != 1 {
		t.Errorf("failure logged %d times in 3 scrapes, want once:\n%s", n, logs.String())
	}
	err = nil
	if got := testutil.ToFloat64(c.upOnly()); got != 1 {
		t.Fatalf("success after recovery = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), "nat collector recovered") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
}

// upOnly is a collector of c's success metric alone, for ToFloat64.
func (c *NATCollector) upOnly() prometheus.Collector {
	return onlyDesc{c, c.up}
}

type onlyDesc struct {
	c    prometheus.Collector
	desc *prometheus.Desc
}

func (o onlyDesc) Describe(ch chan<- *prometheus.Desc) { ch <- o.desc }
func (o onlyDesc) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric, 64)
	go func() { o.c.Collect(all); close(all) }()
	for m := range all {
		if m.Desc() == o.desc {
			ch <- m
		}
	}
}

// The NAT metrics pass promtool's lint through the real HTTP handler.
func TestNATMetricsPromtool(t *testing.T) {
	promtool := requirePromtool(t)
	c := NewNATCollector(func(context.Context) (nat.Snapshot, error) { return natFixture(), nil }, 2, 0, nil)
	h, err := Handler(New(staticSource(fixture(3)), Options{}), c)
	if err != nil {
		t.Fatal(err)
	}
	body := scrapeHandler(t, h)
	if !bytes.Contains(body, []byte("tuple_nat_ports_free")) {
		t.Fatalf("scrape lacks NAT metrics:\n%s", body)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
