package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/tuple-net/tuple/broker"
	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/sockaddr"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/sockopt"
)

// explainFailure, when set, explains a failed bind, listen or connect:
// which socket blocks it and what would work, from the host's socket table
// and the rules model (the why command's code). The hint is its one-line
// form; -v prints it in full. It is a variable so tests can replace it.
var explainFailure = explainNetFailure

// failureExplanation is the model's explanation of a failure, in one line
// for the hint and in full for -v.
type failureExplanation struct {
	brief, full string
}

// netFailure is a socket operation that the kernel refused. It is printed as
// one line with the operation, both addresses and the errno in words, then a
// hint, then the explanation explainFailure gives, if any.
type netFailure struct {
	op      string // "connect", "listen"
	network string // "tcp", "udp"
	local   netip.AddrPort
	remote  netip.AddrPort
	target  string          // the destination (a listen's address) as the user gave it, shown while the address is unknown
	opts    sockopt.Options // the options the socket was given, for the explanation
	// noFlags: the command has neither -v nor the socket flags of listen
	// and connect (tuple exporter), so the report names none.
	noFlags bool
	err     error
}

func (f *netFailure) Unwrap() error { return f.err }

func (f *netFailure) Error() string {
	var b strings.Builder
	b.WriteString(f.op + " " + f.network + " ")
	if f.op == "listen" {
		local := formatAddrPort(f.local)
		if !f.local.IsValid() && f.target != "" {
			local = f.target // a name that did not resolve
		}
		b.WriteString(local)
	} else {
		remote := formatAddrPort(f.remote)
		if !f.remote.IsValid() && f.target != "" {
			remote = f.target
		}
		b.WriteString(formatAddrPort(f.local) + " -> " + remote)
	}
	b.WriteString(": " + describeErr(f.err))
	return b.String()
}

// failedSyscall returns the system call that failed ("bind", "connect",
// "listen") or "".
func failedSyscall(err error) string {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Syscall
	}
	return ""
}

// describeErr says what went wrong: the failed call, the errno in words and
// its C name ("bind: address already in use (EADDRINUSE)").
func describeErr(err error) string {
	var errno syscall.Errno
	var dns *net.DNSError
	var unreachable *broker.UnreachableError
	switch {
	case errors.As(err, &unreachable):
		return "broker " + unreachable.Path + ": " + describeErr(unreachable.Err)
	case errors.As(err, &dns):
		return "resolve " + dns.Name + ": " + dns.Err
	case noAddressOfFamily(err):
		return "the name has no address of the family asked for (-4, -6, or the source address's)"
	case errors.As(err, &errno):
		s := errno.Error() + " (" + rules.ErrnoName(errno) + ")"
		if call := failedSyscall(err); call != "" {
			s = call + ": " + s
		}
		return s
	case isTimeout(err):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "interrupted"
	}
	// Strip the *net.OpError prefix that repeats our own addresses.
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

// warnPortRangeIgnored says on w which ends of an IP_LOCAL_PORT_RANGE
// (what: the flag as given) the kernel will ignore: those outside this namespace's
// ip_local_port_range (rules.EffectiveRange). Nothing fails there, so
// without a word the user would take the ports that come for the range
// they asked.
func warnPortRangeIgnored(w io.Writer, what string, asked inet.PortRange) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil || asked.IsZero() {
		return
	}
	ns, err := hostmodel.ParsePortRange(b)
	if err != nil {
		return
	}
	got, _ := rules.EffectiveRange(rules.Host{EphemeralRange: ns}, rules.Socket{PortRange: asked})
	if (asked.Lo == 0 || got.Lo == asked.Lo) && (asked.Hi == 0 || got.Hi == asked.Hi) {
		return
	}
	warnf(w, "tuple: warning: %s reaches outside net.ipv4.ip_local_port_range %d-%d, and the kernel ignores an end outside it: ports come from %d-%d\n",
		what, ns.Lo, ns.Hi, got.Lo, got.Hi)
}

// isLocalAddr reports whether a is an address of this host (its local
// routes, as the rules model reads them): only there does the socket table
// show why a connect() went unanswered.
func isLocalAddr(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	local, err := hostmodel.IsLocal(a)
	return err == nil && local
}

// sessionFailed is the error of a relay session (what names it) that
// ended with err. Standard output's reader leaving is no failure of the
// session: that error goes up as it is, for Main to end quietly.
func sessionFailed(what string, err error) error {
	if outputGone(err) {
		return err
	}
	return fmt.Errorf("%s: %s", what, describeErr(err))
}

// noAddressOfFamily reports whether err is Go's dialer finding no address
// of the network's family (tcp4, tcp6, or the local address's) among those
// a name resolved to.
func noAddressOfFamily(err error) bool {
	var ae *net.AddrError
	return errors.As(err, &ae) && ae.Err == "no suitable address found"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// hint tells the user what the error means for their sockets and what to
// try, or "" when there is nothing useful to add.
func (f *netFailure) hint() string {
	var errno syscall.Errno
	if !errors.As(f.err, &errno) {
		if isTimeout(f.err) {
			return fmt.Sprintf("no answer from %s within the timeout (-w); a firewall may drop the packets", formatAddrPort(f.remote))
		}
		return ""
	}
	call := failedSyscall(f.err)
	port := f.local.Port()
	switch {
	case errno == syscall.EADDRINUSE:
		// An option is followed by its flag where the command has one.
		opt := func(name, flag string) string {
			if f.noFlags {
				return name
			}
			return name + " (" + flag + ")"
		}
		share := opt("SO_REUSEPORT", "--reuseport") + " is set on every one of them and they belong to the same uid, or " +
			opt("SO_REUSEADDR", "--reuseaddr") + " is set on every one"
		if f.network != "udp" {
			share += " and none of them is listening"
		}
		return fmt.Sprintf("another socket holds port %d on an overlapping address; sockets share a port only when %s. `tuple who %d` shows the holder",
			port, share, port)
	case errno == syscall.EADDRNOTAVAIL && call == "connect" && port != 0:
		return fmt.Sprintf("the four-tuple %s -> %s is taken by another socket (perhaps in TIME_WAIT), or %s is not an address of this host",
			formatAddrPort(f.local), formatAddrPort(f.remote), f.local.Addr())
	case errno == syscall.EADDRNOTAVAIL && call == "connect":
		return fmt.Sprintf("no local port is free towards %s: every port of the ephemeral range (net.ipv4.ip_local_port_range, or --port-range) is in use for this destination",
			formatAddrPort(f.remote))
	case errno == syscall.EADDRNOTAVAIL:
		return fmt.Sprintf("%s is not an address of this host", f.local.Addr())
	case errno == syscall.EACCES && call == "bind":
		return fmt.Sprintf("port %d is below net.ipv4.ip_unprivileged_port_start; binding it needs root or CAP_NET_BIND_SERVICE", port)
	case errno == syscall.ECONNREFUSED:
		return fmt.Sprintf("nothing listens on %s (the host answered with a reset or port unreachable)", formatAddrPort(f.remote))
	case errno == syscall.ENETUNREACH || errno == syscall.EHOSTUNREACH:
		return fmt.Sprintf("no route to %s", f.remote.Addr())
	}
	return ""
}

// report writes the failure for a person: the error line and a hint line,
// as nc would. Where the rules model explains the failure from this host's
// sockets within hintBudget, the hint is its one-line form (what holds the
// port, why, what would work), and -v adds the explanation in full (what
// `tuple why` prints, however long reading the host takes); otherwise the
// hint says what the errno generally means.
func (f *netFailure) report(w io.Writer, verbose bool) {
	warnf(w, "tuple: %s\n", f.Error())
	h := f.hint()
	if explainFailure == nil || !f.explainable() {
		if h != "" {
			warnf(w, "hint: %s\n", h)
		}
		return
	}
	if !verbose {
		ctx, cancel := context.WithTimeout(context.Background(), hintBudget)
		x, err := explainFailure(ctx, f)
		cancel()
		switch {
		case err == nil && x.brief != "":
			h = x.brief
			if !f.noFlags {
				h += "; -v explains it in full"
			}
		case errors.Is(err, context.DeadlineExceeded) && !f.noFlags:
			if h != "" {
				h += "; "
			}
			h += "-v explains it from this host's sockets"
		}
		if h != "" {
			warnf(w, "hint: %s\n", h)
		}
		return
	}
	if h != "" {
		warnf(w, "hint: %s\n", h)
	}
	x, err := explainFailure(context.Background(), f)
	if err != nil {
		warnf(w, "no explanation from this host's sockets: %v\n", err)
		return
	}
	warnf(w, "%s\n", strings.TrimRight(x.full, "\n"))
}

// hintBudget bounds the model's reading of the host for the hint of a
// failure without -v: a few thousand sockets take a few hundred
// milliseconds, a table of 100,000 much longer, which an error message
// should not wait for. A variable so tests can shorten it.
var hintBudget = 500 * time.Millisecond

// explainable reports whether the rules model may explain f: a port or
// address conflict, not a refused or unreachable peer.
func (f *netFailure) explainable() bool {
	var errno syscall.Errno
	if !errors.As(f.err, &errno) {
		// A local listener with a full accept queue lets connect() time
		// out; elsewhere the model cannot see why packets go unanswered.
		return isTimeout(f.err) && f.op == "connect" && isLocalAddr(f.remote.Addr())
	}
	switch errno {
	case syscall.EADDRINUSE, syscall.EADDRNOTAVAIL, syscall.EACCES:
		return true
	case syscall.ETIMEDOUT:
		// tcp_syn_retries ran out: a full accept queue, if local.
		return f.op == "connect" && isLocalAddr(f.remote.Addr())
	}
	return false
}

// reportNetFailure returns the error that exits 1 with f as its cause (so
// errors.Is(err, syscall.EADDRINUSE) still works). Main prints f's report
// to the command's error stream (w), knowing whether it ran with -v.
func reportNetFailure(w io.Writer, f *netFailure) error {
	_ = w
	code := exitFailure
	var dns *net.DNSError
	if errors.As(f.err, &dns) && dns.IsNotFound || noAddressOfFamily(f.err) {
		// A name that does not resolve (or not in the family -4, -6 or
		// -s asks for) is bad input, not a network failure.
		code = exitUsage
	}
	return &exitError{code: code, err: f, silent: true}
}

// printNetFailure prints the report of a failed connect or listen that err
// carries, and reports whether there was one. verbose is the command's -v.
func printNetFailure(w io.Writer, err error, verbose bool) bool {
	var f *netFailure
	if !errors.As(err, &f) {
		return false
	}
	f.report(w, verbose)
	return true
}

// newNetFailure builds a netFailure from a dial or listen error, taking the
// addresses the error carries where the caller did not know them.
func newNetFailure(op, network string, local, remote netip.AddrPort, err error) *netFailure {
	var oe *net.OpError
	if errors.As(err, &oe) {
		if !local.IsValid() || local.Port() == 0 {
			if ap := sockaddr.OfNet(oe.Source); ap.IsValid() {
				local = ap
			}
		}
		switch {
		case op == "listen" && !local.IsValid():
			local = sockaddr.OfNet(oe.Addr)
		case op != "listen" && !remote.IsValid():
			remote = sockaddr.OfNet(oe.Addr)
		}
	}
	return &netFailure{op: op, network: network, local: local, remote: remote, err: err}
}

func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// formatAddrPort prints an address and port, with "*" for what is not
// chosen yet (the unspecified address, port 0, or unknown).
func formatAddrPort(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return "*:*"
	}
	addr := "*"
	if a := ap.Addr(); a.IsValid() && !a.IsUnspecified() {
		addr = a.String()
		if a.Is6() {
			addr = "[" + addr + "]"
		}
	}
	port := "*"
	if ap.Port() != 0 {
		port = fmt.Sprint(ap.Port())
	}
	return addr + ":" + port
}
