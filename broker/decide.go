package broker

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Peer is who asked, as the kernel reported it on the connection
// (SO_PEERCRED, SO_PEERGROUPS, /proc/PID/cgroup), never as the request said.
type Peer struct {
	PID    int32
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
	// Cgroup is the peer's cgroup v2 path ("/system.slice/web.service");
	// "" when it could not be read, which matches no cgroup rule.
	Cgroup string
}

// Usage counts the live sockets a uid holds, for quotas.
type Usage interface {
	// Live counts uid's live sockets under the grant with this Key.
	Live(uid uint32, grantKey string) int
	// LiveTotal counts all of uid's live sockets.
	LiveTotal(uid uint32) int
}

// Decision is the policy's answer to one socket request.
type Decision struct {
	Allowed bool
	Grant   *Grant // the grant that allowed it, or the one whose quota was full
	Reason  string // why: for a denial, the closest grant's mismatch
	Quota   bool   // denied because a quota is reached
}

// Decide applies the policy to one socket request. Grants are tried in file
// order; the first that matches and has quota left allows. With nothing
// allowing, the request is denied, and the reason is the mismatch of the
// grant that came closest.
func (p *Policy) Decide(peer Peer, r *Request, u Usage) Decision {
	return p.DecideExcept(peer, r, u, nil)
}

// DecideExcept is Decide skipping the grants whose Index is in skip: the
// broker retries a request for any port (port 0) with the next grant when
// every port of the first one is taken.
func (p *Policy) DecideExcept(peer Peer, r *Request, u Usage, skip map[int]bool) Decision {
	best, bestDepth := Decision{Reason: fmt.Sprintf("no grant names uid %d or its groups", peer.UID)}, 0
	deny := func(depth int, d Decision) {
		if depth > bestDepth {
			best, bestDepth = d, depth
		}
	}
	for i := range p.Grants {
		g := &p.Grants[i]
		if skip[g.Index] || !g.names(peer) {
			continue
		}
		if g.Proto != r.Proto || g.Address != r.Address {
			deny(1, Decision{Grant: g, Reason: fmt.Sprintf("no grant for uid %d allows %s %s", peer.UID, r.Proto, r.Address)})
			continue
		}
		if r.Port != 0 && (r.Port < g.Ports.Lo || r.Port > g.Ports.Hi) {
			deny(2, Decision{Grant: g, Reason: fmt.Sprintf("%s: port %d is outside %s", g, r.Port, g.PortsText())})
			continue
		}
		if r.Group != "" && r.Group != g.Group {
			deny(3, Decision{Grant: g, Reason: fmt.Sprintf("%s: not reuseport group %q", g, r.Group)})
			continue
		}
		if r.Port == 0 && r.Group == "" && g.Group != "" {
			// "Any port" never makes the asker a member of a group by
			// surprise: joining one takes its port or its name.
			deny(3, Decision{Grant: g, Reason: fmt.Sprintf("%s: name the port or the group to join reuseport group %q", g, g.Group)})
			continue
		}
		if bad := missingOptions(r.opts, g.Options); bad != "" {
			deny(4, Decision{Grant: g, Reason: fmt.Sprintf("%s does not allow option %s", g, bad)})
			continue
		}
		if len(g.Cgroups) > 0 && !inCgroups(peer.Cgroup, g.Cgroups) {
			cg := peer.Cgroup
			if cg == "" {
				cg = "unknown"
			}
			deny(5, Decision{Grant: g, Reason: fmt.Sprintf("%s: cgroup %s is not under %s", g, cg, strings.Join(g.Cgroups, ", "))})
			continue
		}
		if g.MaxSockets > 0 {
			if n := u.Live(peer.UID, g.Key()); n >= g.MaxSockets {
				deny(6, Decision{Grant: g, Quota: true, Reason: fmt.Sprintf("quota: uid %d holds %d of %d sockets under %s", peer.UID, n, g.MaxSockets, g)})
				continue
			}
		}
		if p.MaxSockets > 0 {
			if n := u.LiveTotal(peer.UID); n >= p.MaxSockets {
				return Decision{Grant: g, Quota: true, Reason: fmt.Sprintf("quota: uid %d holds %d of %d sockets (max_sockets)", peer.UID, n, p.MaxSockets)}
			}
		}
		return Decision{Allowed: true, Grant: g, Reason: "allowed by " + g.String()}
	}
	return best
}

// names reports whether the grant lists the peer's uid or one of its gids.
func (g *Grant) names(peer Peer) bool {
	if slices.Contains(g.UIDs, peer.UID) || slices.Contains(g.GIDs, peer.GID) {
		return true
	}
	for _, gid := range peer.Groups {
		if slices.Contains(g.GIDs, gid) {
			return true
		}
	}
	return false
}

// inCgroups reports whether cgroup is one of prefixes or below one, on
// path-component boundaries (/a/b is under /a, /ab is not).
func inCgroups(cgroup string, prefixes []string) bool {
	if cgroup == "" {
		return false
	}
	for _, p := range prefixes {
		if p == "/" || cgroup == p || strings.HasPrefix(cgroup, p+"/") {
			return true
		}
	}
	return false
}

// missingOptions names an option asked for that the grant does not allow.
func missingOptions(asked, allowed Options) string {
	switch {
	case asked.ReusePort && !allowed.ReusePort:
		return "reuseport"
	case asked.ReuseAddr && !allowed.ReuseAddr:
		return "reuseaddr"
	case asked.V6Only && !allowed.V6Only:
		return "v6only"
	}
	return ""
}

// ParseCgroup returns the cgroup v2 path from /proc/PID/cgroup ("0::/a/b"),
// or "" when there is none.
func ParseCgroup(b []byte) string {
	for line := range bytes.Lines(b) {
		line = bytes.TrimRight(line, "\n")
		if p, ok := bytes.CutPrefix(line, []byte("0::")); ok && len(p) > 0 && p[0] == '/' {
			return string(p)
		}
	}
	return ""
}
