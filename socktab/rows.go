package socktab

import (
	"context"
	"errors"
	"net/netip"

	"github.com/tuple-net/tuple/inet"
)

// Row is one socket of a RowTable: the protocol, state, addresses and
// queues, what a plain listing prints. It takes 48 bytes and holds no
// pointers, where a Socket takes about 340 with some: a table of 200,000
// rows is 9.6 MB that the collector never scans, and on hosts where each
// page fault is costly (virtual machines) touching less memory is most of
// a listing's speed.
type Row struct {
	local, remote [16]byte // an IPv4 address in the first 4 bytes
	lport, rport  uint16
	recvQ, sendQ  uint32
	proto         inet.Proto
	family        inet.Family
	state         State
}

func (r *Row) Proto() inet.Proto   { return r.proto }
func (r *Row) Family() inet.Family { return r.family }
func (r *Row) State() State        { return r.state }
func (r *Row) RecvQ() uint32       { return r.recvQ }
func (r *Row) SendQ() uint32       { return r.sendQ }
func (r *Row) LocalPort() uint16   { return r.lport }
func (r *Row) RemotePort() uint16  { return r.rport }

// LocalAddr and RemoteAddr are the addresses' bytes: 4 for IPv4, 16 for
// IPv6 (a formatter reads them without building a netip.Addr).
func (r *Row) LocalAddr() []byte  { return r.local[:r.addrLen()] }
func (r *Row) RemoteAddr() []byte { return r.remote[:r.addrLen()] }

func (r *Row) addrLen() int {
	if r.family == inet.IPv4 {
		return 4
	}
	return 16
}

// Local and Remote are the addresses with their ports.
func (r *Row) Local() netip.AddrPort  { return netip.AddrPortFrom(addrFrom(r.LocalAddr()), r.lport) }
func (r *Row) Remote() netip.AddrPort { return netip.AddrPortFrom(addrFrom(r.RemoteAddr()), r.rport) }

// RowOf is s's row.
func RowOf(s *Socket) Row {
	r := Row{proto: s.Proto, family: s.Family, state: s.State, lport: s.Local.Port(), rport: s.Remote.Port(),
		recvQ: s.RecvQ, sendQ: s.SendQ}
	putAddr(r.local[:], s.Local.Addr())
	putAddr(r.remote[:], s.Remote.Addr())
	return r
}

func putAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		a4 := a.As4()
		copy(b, a4[:])
		return
	}
	a16 := a.As16()
	copy(b, a16[:])
}

// socket is r as a Socket, for the filters written for sockets.
func (r *Row) socket() Socket {
	return Socket{Proto: r.proto, Family: r.family, State: r.state, Local: r.Local(), Remote: r.Remote(),
		RecvQ: r.recvQ, SendQ: r.sendQ}
}

// RowTable is one snapshot in rows.
type RowTable struct {
	Rows   []Row
	Source string   // "netlink" or "procfs"
	Notes  []string // what could not be read and why
}

// SnapshotRows lists the sockets q asks for as rows: what Snapshot lists,
// less the facts a row does not carry (owners, options, uid, inode,
// cookie, timers). q's Owners and Options are ignored; Namespaces is not
// supported (Snapshot reads them).
func SnapshotRows(ctx context.Context, q Query) (*RowTable, error) {
	if len(q.Namespaces) > 0 {
		return nil, errRowsNamespaces
	}
	return snapshotRows(ctx, q.withDefaults())
}

var errRowsNamespaces = errors.New("socktab: rows of other namespaces are not supported (use Snapshot)")

// filterRows is filter for rows: in place, keeping what q asks for.
func filterRows(rows []Row, q Query) []Row {
	n := 0
	for i := range rows {
		r := &rows[i]
		if (r.proto == inet.TCP && !q.TCP) || (r.proto == inet.UDP && !q.UDP) || !q.States.Has(r.state) ||
			(q.LocalPort != 0 && r.lport != q.LocalPort) || (q.RemotePort != 0 && r.rport != q.RemotePort) ||
			(q.Family != 0 && r.family != q.Family) {
			continue
		}
		if q.Filter != nil {
			if s := r.socket(); !q.Filter.Match(&s) {
				continue
			}
		}
		rows[n] = *r
		n++
	}
	return rows[:n]
}
