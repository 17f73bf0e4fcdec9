package hostmodel

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
)

// ParsePortRange parses net.ipv4.ip_local_port_range: two ports separated by
// blanks ("32768\t60999\n").
func ParsePortRange(b []byte) (inet.PortRange, error) {
	f := bytes.Fields(b)
	if len(f) != 2 {
		return inet.PortRange{}, fmt.Errorf("port range %q: want two ports", trim(b))
	}
	lo, err := parsePort(f[0])
	if err != nil {
		return inet.PortRange{}, err
	}
	hi, err := parsePort(f[1])
	if err != nil {
		return inet.PortRange{}, err
	}
	if lo > hi {
		return inet.PortRange{}, fmt.Errorf("port range %q: low end above high end", trim(b))
	}
	return inet.PortRange{Lo: lo, Hi: hi}, nil
}

// parseReservedPorts parses net.ipv4.ip_local_reserved_ports: a comma
// separated list of ports and LO-HI ranges ("8080,9000-9010"), possibly
// empty. Ranges are returned in the order written.
func parseReservedPorts(b []byte) ([]inet.PortRange, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, nil
	}
	var out []inet.PortRange
	for _, item := range bytes.Split(b, []byte(",")) {
		item = bytes.TrimSpace(item)
		lo, hi, isRange := bytes.Cut(item, []byte("-"))
		l, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("reserved ports: %w", err)
		}
		h := l
		if isRange {
			if h, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("reserved ports: %w", err)
			}
		}
		if l > h {
			return nil, fmt.Errorf("reserved ports: range %q: low end above high end", item)
		}
		out = append(out, inet.PortRange{Lo: l, Hi: h})
	}
	return out, nil
}

// SysctlInt reads one integer sysctl of the calling thread's network
// namespace under procRoot ("/proc" when empty): name as under /proc/sys,
// "net/ipv4/icmp_msgs_per_sec".
func SysctlInt(procRoot, name string) (int, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	b, err := os.ReadFile(filepath.Join(procRoot, "sys", name))
	if err != nil {
		return 0, err
	}
	n, err := parseInt(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", dotted(name), err)
	}
	return n, nil
}

// parseInt parses one integer sysctl value ("1\n").
func parseInt(b []byte) (int, error) {
	s := bytes.TrimSpace(b)
	if len(s) == 0 || len(s) > 20 {
		return 0, fmt.Errorf("want an integer, got %q", trim(b))
	}
	n, err := strconv.Atoi(string(s))
	if err != nil {
		return 0, fmt.Errorf("want an integer, got %q", trim(b))
	}
	return n, nil
}

func parsePort(b []byte) (uint16, error) {
	n, err := parseInt(b)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > 65535 {
		return 0, fmt.Errorf("port %d out of range", n)
	}
	return uint16(n), nil
}

// trim shortens b for an error message.
func trim(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 40 {
		b = b[:40]
	}
	return string(b)
}

// Sysctls reads the port sysctls of the calling thread's network namespace
// under procRoot ("/proc" when empty) into host, which keeps its other
// fields. A sysctl the kernel does not have (tcp_tw_reuse_delay before 6.13)
// keeps the value already in host (rules.DefaultHost gives the kernel's
// defaults); each one missing is listed in the notes. Every kernel has
// net.ipv4.ip_local_port_range: when it cannot be read, procRoot is not a
// readable procfs and Sysctls fails rather than report the default range
// as the host's.
func Sysctls(procRoot string, host *rules.Host) (notes []string, err error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	const required = "net/ipv4/ip_local_port_range"
	read := func(name string, parse func([]byte) error) error {
		b, err := os.ReadFile(filepath.Join(procRoot, "sys", name))
		if err != nil && name == required {
			return fmt.Errorf("%s unreadable (is procfs mounted at %s?): %w", dotted(name), procRoot, err)
		}
		if os.IsNotExist(err) {
			notes = append(notes, dotted(name)+" not present; using the kernel default")
			return nil
		}
		if err != nil {
			return err
		}
		if err := parse(b); err != nil {
			return fmt.Errorf("%s: %w", dotted(name), err)
		}
		return nil
	}
	intInto := func(dst *int) func([]byte) error {
		return func(b []byte) error {
			n, err := parseInt(b)
			*dst = n
			return err
		}
	}
	boolInto := func(dst *bool) func([]byte) error {
		return func(b []byte) error {
			n, err := parseInt(b)
			*dst = n != 0
			return err
		}
	}
	var unpriv, delayMS int = int(host.UnprivilegedPortStart), int(host.TWReuseDelay / time.Millisecond)
	steps := []struct {
		name  string
		parse func([]byte) error
	}{
		{"net/ipv4/ip_local_port_range", func(b []byte) (err error) { host.EphemeralRange, err = ParsePortRange(b); return }},
		{"net/ipv4/ip_local_reserved_ports", func(b []byte) (err error) { host.ReservedPorts, err = parseReservedPorts(b); return }},
		{"net/ipv4/ip_unprivileged_port_start", intInto(&unpriv)},
		{"net/ipv4/ip_nonlocal_bind", boolInto(&host.NonlocalBind4)},
		{"net/ipv6/ip_nonlocal_bind", boolInto(&host.NonlocalBind6)},
		{"net/ipv6/bindv6only", boolInto(&host.BindV6Only)},
		{"net/ipv4/ip_autobind_reuse", boolInto(&host.AutobindReuse)},
		{"net/ipv4/tcp_tw_reuse", intInto(&host.TCPTWReuse)},
		{"net/ipv4/tcp_tw_reuse_delay", intInto(&delayMS)},
	}
	for _, s := range steps {
		if err := read(s.name, s.parse); err != nil {
			return notes, err
		}
	}
	// The UDP hash's size (6.2 and later; negative in a namespace that
	// shares the host's table). Older kernels tell only their boot log:
	// the size stays unknown, without a note, as it is on most kernels.
	if n, err := SysctlInt(procRoot, "net/ipv4/udp_hash_entries"); err == nil {
		host.UDPHashSlots = max(n, -n)
	}
	// ip_unprivileged_port_start may be 0..65536 in the kernel; anything
	// above 65535 means every port is privileged.
	switch {
	case unpriv < 0:
		unpriv = 0
	case unpriv > 65535:
		unpriv = 65535
	}
	host.UnprivilegedPortStart = uint16(unpriv)
	host.TWReuseDelay = time.Duration(delayMS) * time.Millisecond
	return notes, nil
}

// dotted turns "net/ipv4/x" into "net.ipv4.x".
func dotted(name string) string {
	return string(bytes.ReplaceAll([]byte(name), []byte("/"), []byte(".")))
}
