package broker

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/netnstest"
)

// BenchmarkHandOut measures a socket from the broker (connect to it, ask,
// policy decision, socket+bind as the grantee, audit line, SCM_RIGHTS
// hand-over) beside the anchor, a plain socket()+bind() in the same
// namespace, in the same run. Both bind 127.0.0.1 with a port the caller
// leaves open. It reports p50 and p99 of each and their ratio:
//
//	go test -run '^$' -bench HandOut -benchtime 2000x ./broker
func BenchmarkHandOut(b *testing.B) {
	ns := netnstest.New(b)
	d := startBroker(b, ns, `
[[grant]]
uids = [0]
proto = "tcp"
address = "127.0.0.1"
ports = "20000-29999"
`)
	c := &Client{Path: d.sock}
	ctx := context.Background()
	req := &Request{Proto: inet.TCP, Address: netip.MustParseAddr("127.0.0.1")}
	var viaBroker, plain []time.Duration
	for b.Loop() {
		t0 := time.Now()
		f, _, err := c.Socket(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		viaBroker = append(viaBroker, time.Since(t0))
		f.Close()
		if err := ns.Do(func() error {
			t0 := time.Now()
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
			plain = append(plain, time.Since(t0))
			unix.Close(fd)
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
	p := func(ds []time.Duration, q float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[min(len(s)-1, int(float64(len(s))*q))]
	}
	bp50, bp99, pp50, pp99 := p(viaBroker, 0.50), p(viaBroker, 0.99), p(plain, 0.50), p(plain, 0.99)
	b.ReportMetric(float64(bp50.Microseconds()), "broker-p50-µs")
	b.ReportMetric(float64(bp99.Microseconds()), "broker-p99-µs")
	b.ReportMetric(float64(pp50.Nanoseconds())/1000, "bind-p50-µs")
	b.ReportMetric(float64(pp99.Nanoseconds())/1000, "bind-p99-µs")
	b.ReportMetric(float64(bp50)/float64(pp50), "p50-ratio")
	b.Logf("%d hand-outs: broker p50 %v p99 %v; socket()+bind() p50 %v p99 %v; broker/plain p50 %.0fx",
		len(viaBroker), bp50, bp99, pp50, pp99, float64(bp50)/float64(pp50))
}
