package cli

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/rules"
)

// scopedOp is one socket a scope test builds for real: an optional device
// (SO_BINDTODEVICE), an optional bind, an optional connect; addresses may
// carry a zone naming an interface.
type scopedOp struct {
	udp     bool
	dev     string
	bind    string // "[addr%zone]:port", empty for none
	connect string
}

// whyArgs is the `tuple why` command line for o.
func (o scopedOp) whyArgs() []string {
	args := []string{"why"}
	switch {
	case o.connect != "":
		args = append(args, "connect")
		if o.bind != "" {
			args = append(args, "--from", o.bind)
		}
	default:
		args = append(args, "bind")
	}
	if o.udp {
		args = append(args, "-u")
	}
	if o.dev != "" {
		args = append(args, "--dev", o.dev)
	}
	if o.connect != "" {
		return append(args, "--json", o.connect)
	}
	return append(args, "--json", o.bind)
}

// scopedSockaddr is ap with its zone as the interface's index.
func scopedSockaddr(t *testing.T, ap netip.AddrPort) *unix.SockaddrInet6 {
	sa := &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
	if zone := ap.Addr().Zone(); zone != "" {
		ifi, err := net.InterfaceByName(zone)
		if err != nil {
			t.Fatalf("zone %s: %v", zone, err)
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return sa
}

// kernel runs o in the calling thread's namespace and returns the verdict
// as `tuple why` names it. A connect() the kernel starts (EINPROGRESS: the
// peer does not exist) succeeded as far as the model judges.
func (o scopedOp) kernel(t *testing.T) string {
	typ := unix.SOCK_STREAM
	if o.udp {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(unix.AF_INET6, typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if o.dev != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, o.dev); err != nil {
			t.Fatal(err)
		}
	}
	if o.bind != "" {
		if err := unix.Bind(fd, scopedSockaddr(t, netip.MustParseAddrPort(o.bind))); err != nil {
			return rules.ErrnoName(err.(syscall.Errno))
		}
	}
	if o.connect != "" {
		err := unix.Connect(fd, scopedSockaddr(t, netip.MustParseAddrPort(o.connect)))
		if err != nil && !errors.Is(err, unix.EINPROGRESS) {
			return rules.ErrnoName(err.(syscall.Errno))
		}
	}
	return "ok"
}

// TestWhyScopedAddressesMatchKernel: `tuple why` on link-local addresses
// with and without a zone, beside SO_BINDTODEVICE, answers as the kernel
// does. fe80::1 is on d0 only; ::1 on lo.
func TestWhyScopedAddressesMatchKernel(t *testing.T) {
	ns := netnstest.New(t, "fd00::1/128")
	ns.LinkLocalOn(t, "d0", "d1", "fe80::1/64")
	for _, c := range []struct {
		op   scopedOp
		want string
	}{
		{scopedOp{bind: "[fe80::1]:8080"}, "EINVAL"},
		{scopedOp{bind: "[fe80::1%d0]:8080"}, "ok"},
		{scopedOp{bind: "[fe80::1%d1]:8080"}, "EADDRNOTAVAIL"},
		{scopedOp{dev: "d0", bind: "[fe80::1]:8080"}, "ok"},
		{scopedOp{dev: "d1", bind: "[fe80::1]:8080"}, "EADDRNOTAVAIL"},
		{scopedOp{dev: "d1", bind: "[fe80::1%d0]:8080"}, "ok"},
		{scopedOp{udp: true, dev: "d1", bind: "[fe80::1%d0]:8080"}, "ok"},
		{scopedOp{dev: "d1", bind: "[::1]:8080"}, "EADDRNOTAVAIL"},
		{scopedOp{dev: "lo", bind: "[::1]:8080"}, "ok"},
		{scopedOp{dev: "d1", bind: "[fd00::1]:8080"}, "ok"},
		{scopedOp{connect: "[fe80::9]:80"}, "EINVAL"},
		{scopedOp{connect: "[fe80::9%d0]:80"}, "ok"},
		{scopedOp{dev: "d0", connect: "[fe80::9%d1]:80"}, "EINVAL"},
		{scopedOp{dev: "d0", connect: "[fe80::9%d0]:80"}, "ok"},
		{scopedOp{udp: true, dev: "d0", connect: "[fe80::9%d1]:80"}, "EINVAL"},
		{scopedOp{udp: true, connect: "[fe80::9]:80"}, "EINVAL"},
		{scopedOp{bind: "[fe80::1%d0]:0", connect: "[fe80::9]:80"}, "ok"},
		{scopedOp{bind: "[fe80::1%d0]:0", connect: "[fe80::9%d1]:80"}, "EINVAL"},
	} {
		var kernel string
		if err := ns.Do(func() error { kernel = c.op.kernel(t); return nil }); err != nil {
			t.Fatal(err)
		}
		args := c.op.whyArgs()
		_, got := whyIn(t, ns, args...)
		if kernel != c.want || got.Verdict != kernel {
			t.Errorf("%s: kernel %s, tuple why %s (%s); want %s from both", strings.Join(args, " "), kernel, got.Verdict, got.Explanation, c.want)
		}
	}
	// An interface the namespace lacks is bad input.
	var code int
	var errOut string
	ns.Do(func() error { code, _, errOut = run(t, "", "why", "bind", "[fe80::1%nosuch]:8080"); return nil })
	if code != exitUsage || !strings.Contains(errOut, `zone "nosuch": no such interface`) {
		t.Errorf("why bind [fe80::1%%nosuch]:8080: exit %d, %q; want %d naming the zone", code, errOut, exitUsage)
	}
}
