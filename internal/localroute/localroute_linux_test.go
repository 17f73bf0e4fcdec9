package localroute

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// TestWaitAddedAddresses: addresses added with `ip addr add` (IPv6 with
// nodad, whose local route comes later) are local once Wait returns, and
// an address never added fails the wait naming it.
func TestWaitAddedAddresses(t *testing.T) {
	ns := netnstest.New(t)
	err := ns.Do(func() error {
		w, err := Watch()
		if err != nil {
			return err
		}
		defer w.Close()
		// Added after the watcher is open, as callers do.
		ns.IP(t, "addr", "add", "10.9.0.1/32", "dev", "lo")
		ns.IP(t, "addr", "add", "fd00::1/128", "dev", "lo", "nodad")
		ns.IP(t, "addr", "add", "fe80::1/128", "dev", "lo", "nodad")
		addrs := []netip.Addr{netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fe80::1")}
		if err := w.Wait(addrs, 3*time.Second); err != nil {
			t.Errorf("Wait for added addresses: %v", err)
		}
		for _, a := range addrs {
			if local, err := isLocal(w.Conn(), a); err != nil || !local {
				t.Errorf("%s after Wait: local %v, %v", a, local, err)
			}
		}
		err = w.Wait([]netip.Addr{netip.MustParseAddr("fd00::9")}, 50*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "fd00::9") {
			t.Errorf("Wait for an address never added = %v, want an error naming fd00::9", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
