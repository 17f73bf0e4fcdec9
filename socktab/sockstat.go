package socktab

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
)

// Sockstat is what /proc/net/sockstat and sockstat6 count in a network
// namespace: the size of a table dump, known before dumping it, so a
// command can size its memory for the table it is about to read.
type Sockstat struct {
	TCP      int // TCP sockets in use, IPv4 and IPv6 (TIME_WAIT excluded)
	TimeWait int // TCP TIME_WAIT entries
	UDP      int // UDP sockets in use, IPv4 and IPv6
}

// Sockets is every TCP and UDP socket a full dump lists.
func (s Sockstat) Sockets() int { return s.TCP + s.TimeWait + s.UDP }

// estimate is how many sockets a dump for q lists.
func (s Sockstat) estimate(q Query) int {
	n := 0
	all := q.States == 0
	// TIME_WAIT entries are counted apart, and inet_diag shows those of
	// substate FIN_WAIT2 in that state: a dump of FIN-WAIT-2 rows lists
	// few sockets besides them (a caller asking for the entries' timers
	// must not get a table sized for every socket).
	entries := StateSet(1<<TimeWait | 1<<FinWait2)
	if q.TCP && (all || q.States&^(entries|1<<BoundInactive) != 0) {
		n += s.TCP // sockets in the listening and established tables
	}
	if q.TCP && (all || q.States&entries != 0) {
		n += s.TimeWait
	}
	if q.UDP {
		n += s.UDP
	}
	return min(n, 1<<22)
}

// ParseSockstat adds the counts of one sockstat or sockstat6 file to s:
// lines "TCP: inuse N orphan N tw N ...", "UDP: inuse N ...", "TCP6: inuse
// N", "UDP6: inuse N". Other lines are ignored; a malformed count of a line
// it reads is an error.
func ParseSockstat(b []byte, s Sockstat) (Sockstat, error) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		name, rest, ok := bytes.Cut(line, []byte(": "))
		if !ok {
			continue
		}
		var inuse, tw *int
		switch string(name) {
		case "TCP":
			inuse, tw = &s.TCP, &s.TimeWait
		case "TCP6":
			inuse = &s.TCP
		case "UDP", "UDP6":
			inuse = &s.UDP
		default:
			continue
		}
		f := bytes.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			var dst *int
			switch string(f[i]) {
			case "inuse":
				dst = inuse
			case "tw":
				dst = tw
			}
			if dst == nil {
				continue
			}
			n, err := strconv.Atoi(string(f[i+1]))
			if err != nil || n < 0 || *dst > math.MaxInt32-n {
				return s, fmt.Errorf("sockstat: %s %s: bad count %q", name, f[i], f[i+1])
			}
			*dst += n
		}
	}
	return s, nil
}

// ReadSockstat reads the counts of the calling thread's network namespace
// under procRoot ("/proc" when empty). A missing sockstat6 (IPv6 disabled)
// counts nothing.
func ReadSockstat(procRoot string) (Sockstat, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	dir := procRoot + "/thread-self/net"
	if _, err := os.Stat(dir); err != nil {
		dir = procRoot + "/net"
	}
	var s Sockstat
	for _, name := range []string{"sockstat", "sockstat6"} {
		b, err := os.ReadFile(dir + "/" + name)
		if errors.Is(err, os.ErrNotExist) && name == "sockstat6" {
			continue
		}
		if err != nil {
			return s, err
		}
		if s, err = ParseSockstat(b, s); err != nil {
			return s, fmt.Errorf("%s/%s: %w", dir, name, err)
		}
	}
	return s, nil
}
