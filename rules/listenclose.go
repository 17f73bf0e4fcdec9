package rules

import (
	"fmt"
	"net/netip"
)

// ListenerClose is what close() of a listener does to the connections in
// its accept queue (inet_csk_listen_stop): each child no process accepted
// is disconnected with a reset (tcp_disconnect sends RST for an
// established child) and destroyed, which frees its hold on the
// listener's port; the peer that receives the reset goes to CLOSE
// (tcp_reset, tcp_done), and tcp_set_state(CLOSE) gives back a port that
// connect() picked, while a port bind() named stays held (SOCK_BINDPORT_LOCK).
// Accepted children belong to their process and are untouched.
type ListenerClose struct {
	// Dropped are the indexes (into World.Sockets) of the children the
	// close destroys.
	Dropped []int
	// Reset are the indexes of the peers that receive the reset, and
	// After their state afterwards (same order).
	Reset []int
	After []Socket
	Why   string
}

// CloseListener predicts the close of listener l (ID as in the children's
// AcceptQueue). The world's sockets are not changed.
func (m *Model) CloseListener(l Socket) ListenerClose {
	var out ListenerClose
	if l.Proto != TCP || l.State != Listen || l.ID == "" {
		out.Why = "not a TCP listener: its close affects no other socket"
		return out
	}
	for _, j := range m.owners(TCP, l.Local.Port()) {
		c := m.socks[j]
		if c.AcceptQueue != l.ID || c.State != Connected {
			continue
		}
		out.Dropped = append(out.Dropped, int(j))
		if p := m.peerOf(int(j)); p >= 0 {
			after := m.socks[p]
			after.Reset = true
			after.Remote = netip.AddrPort{}
			if after.PortFromConnect {
				after.State, after.Local, after.PortFromConnect = Unbound, netip.AddrPort{}, false
			} else {
				after.State = Bound
			}
			out.Reset = append(out.Reset, p)
			out.After = append(out.After, after)
		}
	}
	out.Why = fmt.Sprintf("closing %s resets the %d connection(s) no process accepted and frees their hold on port %d", describe(l), len(out.Dropped), l.Local.Port())
	if len(out.Dropped) == 0 {
		out.Why = fmt.Sprintf("closing %s frees port %d; no connection waits in its accept queue", describe(l), l.Local.Port())
	}
	return out
}

// peerOf is the index of the socket at the other end of connected socket
// i on this host, or -1.
func (m *Model) peerOf(i int) int {
	c := m.socks[i]
	want, from := unmapPort(c.Remote), unmapPort(c.Local)
	for _, j := range m.owners(c.Proto, want.Port()) {
		o := m.socks[j]
		if int(j) != i && o.State == Connected && unmapPort(o.Local) == want && unmapPort(o.Remote) == from {
			return int(j)
		}
	}
	return -1
}
