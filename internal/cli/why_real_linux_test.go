package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/sockaddr"
	"github.com/tuple-net/tuple/rules"
)

// realSock is a socket the tests build for real: options, an optional
// bind, then listen or connect. It is created with fsuid uid (sk_uid), on
// the calling thread, which must be locked inside the test's namespace.
type realSock struct {
	udp        bool
	family     int            // 4 or 6
	bind       netip.AddrPort // zero: no bind()
	reuseAddr  bool
	reusePort  bool
	v6only     bool // set IPV6_V6ONLY=1 (otherwise the default)
	bindNoPort bool
	uid        int
	listen     bool
	connect    netip.AddrPort // zero: no connect()
}

// step is the syscall a realSock failed at, and its errno.
type stepErr struct {
	step  string
	errno syscall.Errno
}

func (e *stepErr) Error() string { return e.step + ": " + rules.ErrnoName(e.errno) }

// sockaddrFor is ap in the socket's family: an IPv4 address given to an
// IPv6 socket becomes IPv4-mapped.
func sockaddrFor(family int, ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr().Unmap()
	if family == 6 {
		a = netip.AddrFrom16(a.As16())
	}
	return sockaddr.From(netip.AddrPortFrom(a, ap.Port()))
}

// create builds the socket. It returns the descriptor (also on failure
// after socket(), so the caller closes it) and the failing step.
func (r realSock) create() (int, error) {
	family, typ := unix.AF_INET, unix.SOCK_STREAM
	if r.family == 6 {
		family = unix.AF_INET6
	}
	if r.udp {
		typ = unix.SOCK_DGRAM
	}
	if r.uid != 0 {
		unix.Setfsuid(r.uid)
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if r.uid != 0 {
		unix.Setfsuid(0)
	}
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	fail := func(step string, err error) (int, error) {
		var errno syscall.Errno
		if !errors.As(err, &errno) {
			return fd, fmt.Errorf("%s: %w", step, err)
		}
		return fd, &stepErr{step, errno}
	}
	set := func(level, opt int, on bool) error {
		if !on {
			return nil
		}
		return unix.SetsockoptInt(fd, level, opt, 1)
	}
	if err := errors.Join(
		set(unix.SOL_SOCKET, unix.SO_REUSEADDR, r.reuseAddr),
		set(unix.SOL_SOCKET, unix.SO_REUSEPORT, r.reusePort),
		set(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, r.v6only && r.family == 6),
		set(unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, r.bindNoPort),
	); err != nil {
		return fail("setsockopt", err)
	}
	if r.bind.IsValid() {
		if err := unix.Bind(fd, sockaddrFor(r.family, r.bind)); err != nil {
			return fail("bind", err)
		}
	}
	if r.listen {
		if err := unix.Listen(fd, 64); err != nil {
			return fail("listen", err)
		}
	}
	if r.connect.IsValid() {
		if err := unix.Connect(fd, sockaddrFor(r.family, r.connect)); err != nil {
			return fail("connect", err)
		}
	}
	return fd, nil
}

// verdict is the kernel's answer as `tuple why` names it: "ok" when every
// step went through, else the errno's name (ECONNREFUSED included: the
// model knows this host's listeners).
func verdict(err error) string {
	var se *stepErr
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &se):
		return rules.ErrnoName(se.errno)
	}
	return "error: " + err.Error()
}

// whyArgs is the `tuple why` command line for r's operation.
func (r realSock) whyArgs() []string {
	var args []string
	ap := func(a netip.AddrPort) string {
		if r.family == 6 && a.Addr().Is4() {
			a = netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
		}
		return a.String()
	}
	switch {
	case r.connect.IsValid():
		args = []string{"why", "connect", ap(r.connect)}
		if r.bind.IsValid() {
			args = append(args, "--from", ap(r.bind))
		}
	case r.listen:
		args = []string{"why", "listen", ap(r.bind)}
	default:
		args = []string{"why", "bind", ap(r.bind)}
	}
	for _, f := range []struct {
		on   bool
		flag string
	}{{r.udp, "-u"}, {r.reuseAddr, "--reuseaddr"}, {r.reusePort, "--reuseport"}, {r.v6only && r.family == 6, "--v6only"}, {r.bindNoPort, "--bind-no-port"}} {
		if f.on {
			args = append(args, f.flag)
		}
	}
	return append(args, "--uid", fmt.Sprint(r.uid), "--json")
}

func (r realSock) String() string {
	var b strings.Builder
	proto := "tcp"
	if r.udp {
		proto = "udp"
	}
	fmt.Fprintf(&b, "%s%d uid=%d", proto, r.family, r.uid)
	for _, f := range []struct {
		on   bool
		name string
	}{{r.reuseAddr, "reuseaddr"}, {r.reusePort, "reuseport"}, {r.v6only, "v6only"}, {r.bindNoPort, "bind-no-port"}} {
		if f.on {
			b.WriteString(" " + f.name)
		}
	}
	if r.bind.IsValid() {
		fmt.Fprintf(&b, " bind %s", r.bind)
	}
	if r.listen {
		b.WriteString(" listen")
	}
	if r.connect.IsValid() {
		fmt.Fprintf(&b, " connect %s", r.connect)
	}
	return b.String()
}

// whyJSON is the part of `tuple why --json` the tests read.
type whyJSON struct {
	Verdict     string `json:"verdict"`
	FailedOp    string `json:"failed_op"`
	Explanation string `json:"explanation"`
	Blockers    []struct {
		Local  string `json:"local"`
		Remote string `json:"remote"`
		State  string `json:"state"`
		UID    uint32 `json:"uid"`
		Owners []struct {
			PID  int    `json:"pid"`
			Comm string `json:"comm"`
		} `json:"owners"`
		Reason string `json:"reason"`
	} `json:"blockers"`
	Fixes []struct {
		Change string `json:"change"`
		Flags  string `json:"flags"`
	} `json:"fixes"`
	Assumptions []string `json:"assumptions"`
	Notes       []string `json:"notes"`
}

// closeFD closes a descriptor the tests made, ignoring -1.
func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

var _ = testing.Verbose
