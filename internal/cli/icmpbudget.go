package cli

import (
	"context"
	"time"

	"github.com/tuple-net/tuple/hostmodel"
)

// icmpBudget paces UDP probes within the kernel's budget of ICMP errors.
// Linux sends at most net.ipv4.icmp_msgs_per_sec of them a second and
// net.ipv4.icmp_msgs_burst at once, ICMPv6 ones included: a
// port-unreachable answer over the budget is dropped, and the closed port
// it would have shown looks silent. The probes take half the budget, the
// rest being left to other traffic. (Answers to datagrams that came in over
// loopback are outside the budget on newer kernels, 6.18 here; the probes
// keep to it all the same, for the kernels that count them.)
type icmpBudget struct {
	tokens   float64
	burst    float64
	perSec   float64
	last     time.Time
	sleepFor func(context.Context, time.Duration) error // tests replace it
}

// Linux's defaults, for a host whose sysctls cannot be read.
const (
	defaultICMPPerSec = 1000
	defaultICMPBurst  = 50
)

func newICMPBudget(procRoot string) *icmpBudget {
	perSec := sysctlOr(procRoot, "net/ipv4/icmp_msgs_per_sec", defaultICMPPerSec)
	burst := sysctlOr(procRoot, "net/ipv4/icmp_msgs_burst", defaultICMPBurst)
	b := &icmpBudget{perSec: max(float64(perSec)/2, 1), burst: max(float64(burst)/2, 1), sleepFor: sleepCtx}
	b.tokens = b.burst
	return b
}

// take waits until a probe fits the budget, and spends it.
func (b *icmpBudget) take(ctx context.Context) error {
	now := time.Now()
	b.refill(now)
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) / b.perSec * float64(time.Second))
		if err := b.sleepFor(ctx, wait); err != nil {
			return err
		}
		// The wait earned what was missing.
		b.tokens, b.last = 1, now.Add(wait)
	}
	b.tokens--
	return nil
}

// refill adds what the budget earned from the last refill until now.
func (b *icmpBudget) refill(now time.Time) {
	if now.After(b.last) {
		if !b.last.IsZero() {
			b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.perSec)
		}
		b.last = now
	}
}

// sysctlOr reads an integer sysctl, or returns def when it cannot.
func sysctlOr(procRoot, name string, def int) int {
	if n, err := hostmodel.SysctlInt(procRoot, name); err == nil && n >= 0 {
		return n
	}
	return def
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
