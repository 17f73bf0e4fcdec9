package cli

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/tuple-net/tuple/hostmodel"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/sockopt"
)

// Parsing shared by connect and listen. Every function returns an error
// meant as one line of bad input (the caller wraps it in usageError).

// parsePort parses a port number or a service name ("http"). Port 0 is only
// accepted when allowZero (listen: let the kernel pick).
func parsePort(network, s string, allowZero bool) (uint16, error) {
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		if n == 0 && !allowZero {
			return 0, fmt.Errorf("port %q: want 1-65535", s)
		}
		return uint16(n), nil
	}
	// A service name starts with a letter; "+80" or "0x50" is neither a
	// port nor a name (the resolver would take "+80" as 80).
	if s == "" || strings.ContainsAny(s, " \t/:") || !isLetter(s[0]) {
		return 0, fmt.Errorf("port %q: want a number 1-65535 or a service name", s)
	}
	n, err := net.LookupPort(network, s)
	if err != nil || n <= 0 || n > 65535 {
		return 0, fmt.Errorf("port %q: not a number and not a known %s service", s, network)
	}
	return uint16(n), nil
}

// markFlag is a firewall mark flag (--mark), parsed as it is set: a
// number 0-4294967295, in decimal or with a 0x, 0o or 0b prefix, as ip
// rule fwmark takes it.
type markFlag uint32

func (m *markFlag) String() string { return strconv.FormatUint(uint64(*m), 10) }
func (m *markFlag) Type() string   { return "MARK" }

func (m *markFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return fmt.Errorf("want a number 0-4294967295 (16 or 0x10)")
	}
	*m = markFlag(n)
	return nil
}

// zoneIndex resolves an IPv6 zone (an interface name or index, as in
// fe80::1%eth0) to the interface index of the calling thread's namespace.
func zoneIndex(zone string) (int, error) {
	if n, err := strconv.Atoi(zone); err == nil && n > 0 {
		if _, err := net.InterfaceByIndex(n); err != nil {
			return 0, fmt.Errorf("zone %q: no interface with that index", zone)
		}
		return n, nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, fmt.Errorf("zone %q: no such interface", zone)
	}
	return ifi.Index, nil
}

// zoneNames writes interface names back into the model's text: rules
// takes a zone as its interface index (rules.ZoneDev), and prints
// [fe80::1%3]:80 where people wrote, and ip(8) shows, [fe80::1%eth0]:80.
// It maps the index of every interface of the calling thread's namespace
// to its name; an index of no interface stays a number.
type zoneNames map[string]string

// interfaceZones are the zone names of the calling thread's namespace,
// none when its interfaces cannot be listed (the text keeps numbers).
func interfaceZones() zoneNames {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	z := make(zoneNames, len(ifs))
	for _, ifi := range ifs {
		z[strconv.Itoa(ifi.Index)] = ifi.Name
	}
	return z
}

// spell replaces each zone index in text (a '%' after an address's last
// hex digit, colon or dot, then digits) and each "device N" of the
// model's explanations by its interface's name.
func (z zoneNames) spell(text string) string {
	if len(z) == 0 {
		return text
	}
	text = z.replaceAfter(text, "%", func(before string) bool { return before != "" && isAddrByte(before[len(before)-1]) })
	return z.replaceAfter(text, "device ", func(string) bool { return true })
}

// replaceAfter replaces the digits after each mark in text that name an
// interface, where ok(the text before the mark) and no letter follows.
func (z zoneNames) replaceAfter(text, mark string, ok func(before string) bool) string {
	var b strings.Builder
	for {
		i := strings.Index(text, mark)
		if i < 0 {
			if b.Len() == 0 {
				return text
			}
			b.WriteString(text)
			return b.String()
		}
		start := i + len(mark)
		j := start
		for j < len(text) && text[j] >= '0' && text[j] <= '9' {
			j++
		}
		name, found := z[text[start:j]]
		b.WriteString(text[:start])
		if found && ok(text[:i]) && (j == len(text) || !isLetter(text[j])) {
			b.WriteString(name)
		} else {
			b.WriteString(text[start:j])
		}
		text = text[j:]
	}
}

// isAddrByte reports whether c may end the address before a zone.
func isAddrByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.'
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// parseIP parses a literal address, with or without brackets, dropping a
// v4-mapped prefix so families compare as users expect.
func parseIP(s string) (netip.Addr, error) {
	inner := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if len(s)-len(inner) == 1 { // one bracket without its pair
		return netip.Addr{}, fmt.Errorf("address %q: unbalanced brackets", s)
	}
	a, err := netip.ParseAddr(inner)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("address %q: not an IP address", s)
	}
	return a.Unmap(), nil
}

// checkHostName returns a bad-input error for what (HOST, ADDR) when s,
// not an IP address, cannot be a host name either: a character no name has
// ('[', ':', '%', a space: a mistyped address), or an all-digit last label
// (999.1.1.1: no top-level domain is numeric). Such input would otherwise
// go to the resolver and fail as a network error.
func checkHostName(what, s string) error {
	name := strings.TrimSuffix(s, ".") // a fully qualified name's root
	last := name[strings.LastIndexByte(name, '.')+1:]
	notInName := func(c rune) bool {
		return !(c < 0x80 && isLetter(byte(c)) || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_')
	}
	if s == "" || s[0] == '-' || s[0] == '.' || strings.IndexFunc(s, notInName) >= 0 || strings.Trim(last, "0123456789") == "" {
		return fmt.Errorf("%s %q is neither an IP address nor a host name", what, s)
	}
	return nil
}

// parseTimeout takes nc's whole seconds ("5") or a Go duration ("500ms").
func parseTimeout(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	var d time.Duration
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		d = time.Duration(n * float64(time.Second))
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, fmt.Errorf("timeout %q: want seconds (5) or a duration (500ms)", s)
	}
	if d <= 0 || d > 24*time.Hour {
		return 0, fmt.Errorf("timeout %q: want more than 0 and at most 24h", s)
	}
	return d, nil
}

// parseQuit parses nc's -q SECS: seconds (or a duration) to wait after
// stdin ends; 0 ends at once, a negative number waits for the peer (on is
// false then).
func parseQuit(s string) (d time.Duration, on bool, err error) {
	n, ferr := strconv.ParseFloat(s, 64)
	if ferr != nil {
		if d, err = time.ParseDuration(s); err != nil {
			return 0, false, fmt.Errorf("-q %q: want seconds (1, 0.5) or a duration (500ms)", s)
		}
	} else {
		if n != n || n > 24*3600 { // NaN, or beyond any use
			return 0, false, fmt.Errorf("-q %q: want seconds up to 86400", s)
		}
		d = time.Duration(n * float64(time.Second))
	}
	if d < 0 {
		return 0, false, nil
	}
	if d > 24*time.Hour {
		return 0, false, fmt.Errorf("-q %q: want at most 24h", s)
	}
	return d, true, nil
}

// kernelV6OnlyDefault is IPV6_V6ONLY as net.ipv6.bindv6only sets it for
// new sockets, or V6OnlyDefault (Go's choice) when it cannot be read.
func kernelV6OnlyDefault() sockopt.V6OnlyMode {
	h := rules.DefaultHost()
	if _, err := hostmodel.Sysctls("", &h); err != nil {
		return sockopt.V6OnlyDefault
	}
	if h.BindV6Only {
		return sockopt.V6OnlyOn
	}
	return sockopt.V6OnlyOff
}

// family is the address family the user asked for with -4/-6.
type family uint8

const (
	anyFamily family = iota
	ipv4Only
	ipv6Only
)

func pickFamily(v4, v6 bool) (family, error) {
	switch {
	case v4 && v6:
		return 0, fmt.Errorf("-4 and -6 exclude each other")
	case v4:
		return ipv4Only, nil
	case v6:
		return ipv6Only, nil
	}
	return anyFamily, nil
}

// network returns "tcp", "tcp4", "udp6", ... for proto and f.
func (f family) network(proto string) string {
	switch f {
	case ipv4Only:
		return proto + "4"
	case ipv6Only:
		return proto + "6"
	}
	return proto
}

// allows reports whether address a fits the family (which flag excludes it
// otherwise, for the error message).
func (f family) allows(a netip.Addr) (bool, string) {
	switch {
	case f == ipv4Only && !a.Is4():
		return false, "-4"
	case f == ipv6Only && !a.Is6():
		return false, "-6"
	}
	return true, ""
}

// check is allows as bad input about the address the user gave as what
// (HOST, ADDR, -s), with its zone checked too. The address is quoted: a
// zone is any text, control characters included, and the error is one line.
func (f family) check(what, given string, a netip.Addr) error {
	if ok, flag := f.allows(a); !ok {
		return fmt.Errorf("%s %q is not allowed with %s", what, given, flag)
	}
	if zone := a.Zone(); zone != "" {
		if _, err := zoneIndex(zone); err != nil {
			return fmt.Errorf("%s %q: %v", what, given, err)
		}
	}
	return nil
}
