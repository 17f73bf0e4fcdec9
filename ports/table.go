package ports

import (
	"context"

	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

// Snapshot reads the socket table of the calling thread's network namespace
// and returns its TCP sockets as budget entries, with the table for callers
// that also count sockets. owners finds the processes holding each socket
// (a scan of every /proc/PID/fd); options also reads their live options,
// which tells connect-picked ports apart where IP_BIND_ADDRESS_NO_PORT is
// set (slower still: one pidfd_getfd per socket).
func Snapshot(ctx context.Context, procRoot string, owners, options bool) ([]Entry, *socktab.Table, error) {
	t, err := socktab.Snapshot(ctx, socktab.Query{TCP: true, UDP: true, Owners: owners || options, Options: options, ProcRoot: procRoot})
	if err != nil {
		return nil, nil, err
	}
	return FromTable(t), t, nil
}

// FromTable converts the TCP sockets of t into budget entries. Facts the
// table cannot show are marked unknown rather than guessed: whether a
// connected or TIME_WAIT socket's port came from connect() or bind()
// (rules.FactPortOrigin), and whether a TIME_WAIT peer used timestamps.
// Request sockets (SYN_RECV) own no port and are skipped.
func FromTable(t *socktab.Table) []Entry {
	entries := make([]Entry, 0, len(t.Sockets))
	for i := range t.Sockets {
		s := &t.Sockets[i]
		if s.Proto != socktab.TCP {
			continue
		}
		r := rules.Socket{
			Proto: rules.TCP, Family: rules.Family(s.Family),
			Local: s.Local, Remote: s.Remote, UID: s.UID, Dev: s.Dev,
		}
		switch s.State {
		case socktab.SynRecv, socktab.NewSynRecv:
			continue
		case socktab.Listen:
			r.State = rules.Listen
		case socktab.BoundInactive, socktab.Close:
			r.State = rules.Bound
		case socktab.TimeWait:
			r.State = rules.TimeWait
			r.Unknown |= rules.FactTimestamps
			r.TWAge = TimeWaitLength - s.TimeLeft
		default:
			r.State = rules.Connected
		}
		if r.State == rules.Connected || r.State == rules.TimeWait {
			// IP_BIND_ADDRESS_NO_PORT on a connected socket means
			// connect() picked the port; nothing else in the table tells.
			if o := s.Options.BindAddressNoPort; o.Known && o.Value {
				r.PortFromConnect = true
			} else {
				r.Unknown |= rules.FactPortOrigin
			}
		}
		if s.V6Only.Known {
			r.V6Only = s.V6Only.Value
		} else if s.Options.V6Only.Known {
			r.V6Only = s.Options.V6Only.Value
		} else if s.Family == socktab.IPv6 {
			r.Unknown |= rules.FactV6Only
		}
		if s.Options.ReuseAddr.Known {
			r.ReuseAddr = s.Options.ReuseAddr.Value
		} else {
			r.Unknown |= rules.FactReuseAddr
		}
		if s.Options.ReusePort.Known {
			r.ReusePort = s.Options.ReusePort.Value
		} else {
			r.Unknown |= rules.FactReusePort
		}
		e := Entry{Socket: r, Owners: make([]Owner, 0, len(s.Owners))}
		if s.State == socktab.TimeWait {
			e.TimeLeft = s.TimeLeft
		}
		for _, o := range s.Owners {
			e.Owners = append(e.Owners, Owner{PID: o.PID, Comm: o.Comm})
		}
		entries = append(entries, e)
	}
	return entries
}
