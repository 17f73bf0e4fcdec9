package ports

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tuple-net/tuple/rules"
)

// ReadHost reads the sysctls the budget needs from procRoot ("/proc" when
// empty) in the calling thread's network namespace, starting from
// rules.DefaultHost for anything absent.
//
// It is written here, small, so ports does not wait for the shared host
// reader (branch why); Budget takes a rules.Host, so callers can pass that
// reader's result instead.
func ReadHost(procRoot string) (rules.Host, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	h := rules.DefaultHost()
	dir := filepath.Join(procRoot, "sys", "net", "ipv4")
	read := func(name string) ([]byte, bool, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil
		}
		return b, err == nil, err
	}
	b, ok, err := read("ip_local_port_range")
	if err != nil {
		return h, err
	}
	if ok {
		if h.EphemeralRange, err = ParseLocalPortRange(b); err != nil {
			return h, err
		}
	}
	if b, ok, err = read("ip_local_reserved_ports"); err != nil {
		return h, err
	} else if ok {
		if h.ReservedPorts, err = ParseReservedPorts(b); err != nil {
			return h, err
		}
	}
	ints := []struct {
		name string
		set  func(int)
	}{
		{"tcp_tw_reuse", func(v int) { h.TCPTWReuse = v }},
		{"ip_autobind_reuse", func(v int) { h.AutobindReuse = v != 0 }},
		{"ip_unprivileged_port_start", func(v int) { h.UnprivilegedPortStart = uint16(max(0, min(v, 65535))) }},
		{"tcp_tw_reuse_delay", func(v int) { h.TWReuseDelay = time.Duration(v) * time.Millisecond }},
	}
	for _, s := range ints {
		b, ok, err := read(s.name)
		if err != nil {
			return h, err
		}
		if !ok {
			continue
		}
		v, err := strconv.Atoi(string(bytes.TrimSpace(b)))
		if err != nil {
			return h, fmt.Errorf("net.ipv4.%s: %q is not a number", s.name, bytes.TrimSpace(b))
		}
		s.set(v)
	}
	return h, nil
}

// ParseLocalPortRange parses net.ipv4.ip_local_port_range ("32768\t60999").
func ParseLocalPortRange(b []byte) (rules.PortRange, error) {
	f := bytes.Fields(b)
	if len(f) != 2 {
		return rules.PortRange{}, fmt.Errorf("ip_local_port_range: want two numbers, got %q", b)
	}
	lo, err1 := parsePort(f[0])
	hi, err2 := parsePort(f[1])
	if err := errors.Join(err1, err2); err != nil {
		return rules.PortRange{}, fmt.Errorf("ip_local_port_range: %w", err)
	}
	if lo > hi {
		return rules.PortRange{}, fmt.Errorf("ip_local_port_range: %d > %d", lo, hi)
	}
	return rules.PortRange{Lo: lo, Hi: hi}, nil
}

// ParseReservedPorts parses net.ipv4.ip_local_reserved_ports: a
// comma-separated list of ports and LO-HI ranges, possibly empty.
func ParseReservedPorts(b []byte) ([]rules.PortRange, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, nil
	}
	var out []rules.PortRange
	for part := range bytes.SplitSeq(b, []byte(",")) {
		lo, hi, isRange := bytes.Cut(bytes.TrimSpace(part), []byte("-"))
		l, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("ip_local_reserved_ports: %w", err)
		}
		h := l
		if isRange {
			if h, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("ip_local_reserved_ports: %w", err)
			}
		}
		if l > h {
			return nil, fmt.Errorf("ip_local_reserved_ports: %d > %d", l, h)
		}
		out = append(out, rules.PortRange{Lo: l, Hi: h})
	}
	return out, nil
}

func parsePort(b []byte) (uint16, error) {
	v, err := strconv.ParseUint(string(b), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port", b)
	}
	return uint16(v), nil
}
