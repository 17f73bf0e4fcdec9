package broker

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/tuple-net/tuple/inet"
)

// Policy is a parsed policy file: who may get which socket. Anything no
// grant allows is denied.
type Policy struct {
	Socket SocketFile
	// MaxSockets is the most live sockets one uid may hold across every
	// grant; 0 means no limit beyond each grant's own.
	MaxSockets int
	Grants     []Grant
}

// SocketFile says where the broker listens and who may connect to it.
type SocketFile struct {
	Path  string      // "" leaves the choice to the daemon's caller
	Mode  os.FileMode // permission bits; 0 means DefaultSocketMode
	Owner string      // user name or numeric uid; "" leaves it as created
	Group string      // group name or numeric gid; "" leaves it as created
}

// DefaultSocketMode lets every local user ask: the policy, not the file
// mode, decides what they get.
const DefaultSocketMode os.FileMode = 0o666

// Options are the socket options a grant allows a request to ask for.
type Options struct {
	ReusePort bool
	ReuseAddr bool
	V6Only    bool
}

// Grant is one [[grant]] table of the policy.
type Grant struct {
	Index   int      // 1-based position in the file, named in reasons
	UIDs    []uint32 // peers whose uid is listed match
	GIDs    []uint32 // peers with any of these as primary or supplementary gid match
	Cgroups []string // when set, the peer's cgroup must be one of these or below one
	Proto   inet.Proto
	Address netip.Addr
	Ports   inet.PortRange
	Options Options
	// Group names one SO_REUSEPORT group shared by every socket handed out
	// under it, whatever the grantee's uid.
	Group      string
	Device     string // SO_BINDTODEVICE for every socket of this grant
	MaxSockets int    // most live sockets per uid under this grant; 0: no limit
}

// Key identifies a grant across reloads, for counting live sockets: a grant
// whose protocol, address, ports and group are unchanged keeps its count.
func (g *Grant) Key() string {
	k := fmt.Sprintf("%s %s %s", g.Proto, g.Address, g.PortsText())
	if g.Group != "" {
		k += " group=" + g.Group
	}
	return k
}

// PortsText is the grant's ports as the policy file spells them: one port,
// or a range LO-HI.
func (g *Grant) PortsText() string {
	if g.Ports.Lo == g.Ports.Hi {
		return strconv.Itoa(int(g.Ports.Lo))
	}
	return g.Ports.String()
}

// String names the grant the way reasons and the audit trail show it.
func (g *Grant) String() string { return fmt.Sprintf("grant #%d (%s)", g.Index, g.Key()) }

// rawPolicy is the file as TOML spells it.
type rawPolicy struct {
	MaxSockets int64 `toml:"max_sockets"`
	Socket     struct {
		Path  string `toml:"path"`
		Mode  string `toml:"mode"`
		Owner any    `toml:"owner"`
		Group any    `toml:"group"`
	} `toml:"socket"`
	Grant []rawGrant `toml:"grant"`
}

type rawGrant struct {
	UIDs       []int64  `toml:"uids"`
	GIDs       []int64  `toml:"gids"`
	Cgroups    []string `toml:"cgroups"`
	Proto      string   `toml:"proto"`
	Address    string   `toml:"address"`
	Ports      any      `toml:"ports"`
	Options    []string `toml:"options"`
	Group      string   `toml:"group"`
	Device     string   `toml:"device"`
	MaxSockets int64    `toml:"max_sockets"`
}

// maxGrants bounds a policy's size; a real one has a handful.
const maxGrants = 4096

// ParsePolicy parses a policy file's contents. It is pure: names of users
// and groups are kept as written and resolved by the daemon. Every error
// names the grant or key that is wrong.
func ParsePolicy(b []byte) (*Policy, error) {
	var raw rawPolicy
	md, err := toml.Decode(string(b), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("unknown key %q", und[0].String())
	}
	p := &Policy{}
	if raw.MaxSockets < 0 || raw.MaxSockets > 1<<20 {
		return nil, fmt.Errorf("max_sockets %d: want 0 (no limit) to %d", raw.MaxSockets, 1<<20)
	}
	p.MaxSockets = int(raw.MaxSockets)
	if p.Socket, err = parseSocketFile(raw.Socket.Path, raw.Socket.Mode, raw.Socket.Owner, raw.Socket.Group); err != nil {
		return nil, fmt.Errorf("socket: %v", err)
	}
	if len(raw.Grant) > maxGrants {
		return nil, fmt.Errorf("%d grants: at most %d", len(raw.Grant), maxGrants)
	}
	for i, rg := range raw.Grant {
		g, err := parseGrant(rg)
		if err != nil {
			return nil, fmt.Errorf("grant #%d: %v", i+1, err)
		}
		g.Index = i + 1
		p.Grants = append(p.Grants, g)
	}
	if err := checkGroups(p.Grants); err != nil {
		return nil, err
	}
	return p, nil
}

func parseSocketFile(p, mode string, owner, group any) (SocketFile, error) {
	var s SocketFile
	if p != "" {
		if !strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
			return s, fmt.Errorf("path %q: want an absolute path", p)
		}
		s.Path = path.Clean(p)
	}
	if mode != "" {
		m, err := strconv.ParseUint(mode, 8, 32)
		if err != nil || m > 0o777 {
			return s, fmt.Errorf("mode %q: want octal permission bits such as \"0660\"", mode)
		}
		s.Mode = os.FileMode(m)
	}
	var err error
	if s.Owner, err = nameOrID("owner", owner); err != nil {
		return s, err
	}
	if s.Group, err = nameOrID("group", group); err != nil {
		return s, err
	}
	return s, nil
}

// nameOrID accepts a user or group as a name or a number.
func nameOrID(key string, v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case int64:
		if v < 0 || v > 1<<32-2 {
			return "", fmt.Errorf("%s %d: not a valid id", key, v)
		}
		return strconv.FormatInt(v, 10), nil
	case string:
		if v == "" || strings.ContainsAny(v, ":/ \t\n\x00") {
			return "", fmt.Errorf("%s %q: want a name or a number", key, v)
		}
		return v, nil
	}
	return "", fmt.Errorf("%s: want a name or a number, got %T", key, v)
}

func parseGrant(rg rawGrant) (Grant, error) {
	var g Grant
	var err error
	if len(rg.UIDs) == 0 && len(rg.GIDs) == 0 {
		return g, fmt.Errorf("names no uids or gids: it would match nobody")
	}
	if g.UIDs, err = ids("uids", rg.UIDs); err != nil {
		return g, err
	}
	if g.GIDs, err = ids("gids", rg.GIDs); err != nil {
		return g, err
	}
	for _, c := range rg.Cgroups {
		if !strings.HasPrefix(c, "/") || strings.ContainsAny(c, "\n\x00") {
			return g, fmt.Errorf("cgroups: %q: want a cgroup path starting with /", c)
		}
		g.Cgroups = append(g.Cgroups, path.Clean(c))
	}
	if rg.Proto == "" {
		return g, fmt.Errorf("proto is missing: want \"tcp\" or \"udp\"")
	}
	if g.Proto, err = inet.ParseProto(rg.Proto); err != nil {
		return g, fmt.Errorf("proto %q: want \"tcp\" or \"udp\"", rg.Proto)
	}
	if rg.Address == "" {
		return g, fmt.Errorf("address is missing: want an address, \"0.0.0.0\" or \"::\"")
	}
	a, err := netip.ParseAddr(rg.Address)
	if err != nil || a.Zone() != "" {
		return g, fmt.Errorf("address %q: want an IP address without a zone (use device for an interface)", rg.Address)
	}
	g.Address = a.Unmap()
	switch v := rg.Ports.(type) {
	case nil:
		return g, fmt.Errorf("ports is missing: want a port or a range such as \"8000-8009\"")
	case int64:
		if v < 1 || v > 65535 {
			return g, fmt.Errorf("ports %d: want 1-65535", v)
		}
		g.Ports = inet.PortRange{Lo: uint16(v), Hi: uint16(v)}
	case string:
		if g.Ports, err = inet.ParsePortRange(v); err != nil {
			return g, fmt.Errorf("ports: %v", err)
		}
	default:
		return g, fmt.Errorf("ports: want a port or a range string, got %T", v)
	}
	if g.Options, err = parseOptions(rg.Options, g.Address); err != nil {
		return g, fmt.Errorf("options: %v", err)
	}
	if rg.Group != "" {
		if !validName(rg.Group, 64) {
			return g, fmt.Errorf("group %q: want up to 64 letters, digits, '-', '_' or '.'", rg.Group)
		}
		g.Group = rg.Group
		g.Options.ReusePort = true // a group is a reuseport group
	}
	if rg.Device != "" {
		if len(rg.Device) > 15 || strings.ContainsAny(rg.Device, "/: \t\n\x00") {
			return g, fmt.Errorf("device %q: not an interface name", rg.Device)
		}
		g.Device = rg.Device
	}
	if rg.MaxSockets < 0 || rg.MaxSockets > 1<<20 {
		return g, fmt.Errorf("max_sockets %d: want 0 (no limit) to %d", rg.MaxSockets, 1<<20)
	}
	g.MaxSockets = int(rg.MaxSockets)
	return g, nil
}

// parseOptions reads option names, as grants and requests spell them.
func parseOptions(names []string, addr netip.Addr) (Options, error) {
	var o Options
	for _, n := range names {
		switch n {
		case "reuseport":
			o.ReusePort = true
		case "reuseaddr":
			o.ReuseAddr = true
		case "v6only":
			if !addr.Is6() {
				return o, fmt.Errorf("v6only needs an IPv6 address, not %s", addr)
			}
			o.V6Only = true
		default:
			return o, fmt.Errorf("%q: want reuseport, reuseaddr or v6only", n)
		}
	}
	return o, nil
}

func ids(key string, in []int64) ([]uint32, error) {
	var out []uint32
	for _, v := range in {
		// (uid_t)-1 means "no change" to the kernel: never a real id.
		if v < 0 || v > 1<<32-2 {
			return nil, fmt.Errorf("%s: %d is not a valid id", key, v)
		}
		out = append(out, uint32(v))
	}
	return out, nil
}

func validName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, r := range s {
		ok := r == '-' || r == '_' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !ok {
			return false
		}
	}
	return true
}

// checkGroups rejects two reuseport groups that could land on one port:
// every group member is created by the broker's uid, so the kernel would
// merge them into one group and spread one group's traffic to the other's
// processes. The kernel joins a socket to a group only on the same port,
// family, exact address and device (inet_reuseport_add_sock,
// udp_reuseport_add_sock): 0.0.0.0 beside 127.0.0.1 makes two groups, and
// the lookup picks between them.
func checkGroups(gs []Grant) error {
	for i := range gs {
		for j := i + 1; j < len(gs); j++ {
			a, b := &gs[i], &gs[j]
			if a.Group == "" || b.Group == "" || a.Group == b.Group || a.Proto != b.Proto {
				continue
			}
			if a.Ports.Lo > b.Ports.Hi || b.Ports.Lo > a.Ports.Hi {
				continue
			}
			if a.Address == b.Address && a.Device == b.Device {
				return fmt.Errorf("grant #%d (group %q) and grant #%d (group %q) can bind the same %s port: the kernel would merge the two reuseport groups",
					a.Index, a.Group, b.Index, b.Group, a.Proto)
			}
		}
	}
	return nil
}
