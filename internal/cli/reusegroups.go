package cli

import (
	"io"
	"strconv"

	"github.com/tuple-net/tuple/reusegroup"
)

// appendGroups renders the reuseport-group section of who and ls -o: per
// group a header (protocol, address, uid, members, group id, program), then
// one line per member with its index, owners and accept queue.
func appendGroups(b []byte, groups []reusegroup.Group) []byte {
	for i := range groups {
		g := &groups[i]
		b = append(b, "reuseport group "...)
		b = append(b, g.Proto.String()...)
		b = append(b, ' ')
		b = appendAddrPort(b, g.Local)
		b = append(b, " uid="...)
		b = strconv.AppendUint(b, uint64(g.UID), 10)
		b = append(b, ": "...)
		b = strconv.AppendInt(b, int64(g.Size), 10)
		b = append(b, " member(s)"...)
		if g.Known {
			b = append(b, ", id "...)
			b = strconv.AppendUint(b, uint64(g.ID), 10)
			b = append(b, ", program "...)
			b = appendProgram(b, g)
		} else {
			b = append(b, "; index, id and program "...)
			b = append(b, g.Reason...)
		}
		b = append(b, '\n')
		for _, m := range g.Members {
			b = append(b, "  index "...)
			if m.Index >= 0 {
				b = strconv.AppendInt(b, int64(m.Index), 10)
			} else {
				b = append(b, '?')
			}
			b = append(b, ": "...)
			if len(m.Socket.Owners) == 0 {
				b = append(b, "no process"...)
			}
			b = appendOwners(b, m.Socket.Owners)
			b = append(b, " uid="...)
			b = strconv.AppendUint(b, uint64(m.Socket.UID), 10)
			if g.Proto.String() == "tcp" {
				// inet_diag reports a listener's accept queue as
				// Recv-Q and its limit (the listen backlog) as Send-Q.
				b = append(b, " accept-queue="...)
				b = strconv.AppendUint(b, uint64(m.Socket.RecvQ), 10)
				b = append(b, '/')
				b = strconv.AppendUint(b, uint64(m.Socket.SendQ), 10)
			} else {
				b = append(b, " recv-q="...)
				b = strconv.AppendUint(b, uint64(m.Socket.RecvQ), 10)
			}
			b = append(b, '\n')
		}
	}
	return b
}

// appendProgram names the group's program: none (the kernel's hash), its
// kind and id.
func appendProgram(b []byte, g *reusegroup.Group) []byte {
	if g.Prog == nil {
		return append(b, "none (the kernel's hash)"...)
	}
	b = append(b, g.Prog.Kind()...)
	if g.Prog.ID != 0 {
		b = append(b, " id "...)
		b = strconv.AppendUint(b, uint64(g.Prog.ID), 10)
	}
	return b
}

// writeGroups writes the section, nothing when there is no group.
func writeGroups(w io.Writer, groups []reusegroup.Group) error {
	if len(groups) == 0 {
		return nil
	}
	_, err := w.Write(appendGroups(nil, groups))
	return err
}

// jsonGroup is a reuseport group in `tuple who --json`.
type jsonGroup struct {
	Proto     string       `json:"proto"`
	LocalAddr string       `json:"local_addr"`
	LocalPort uint16       `json:"local_port"`
	UID       uint32       `json:"uid"`
	Size      int          `json:"size"`
	Known     bool         `json:"known"`
	Reason    string       `json:"reason,omitempty"`
	ID        uint32       `json:"id,omitempty"`
	Program   *jsonProgram `json:"program,omitempty"`
	Members   []jsonMember `json:"members"`
}

type jsonProgram struct {
	Kind string `json:"kind"`
	ID   uint32 `json:"id,omitempty"`
}

type jsonMember struct {
	Index  *int        `json:"index"` // null when unknown
	Cookie uint64      `json:"cookie"`
	UID    uint32      `json:"uid"`
	RecvQ  uint32      `json:"recv_q"`
	SendQ  uint32      `json:"send_q"`
	Owners []jsonOwner `json:"owners"`
}

func toJSONGroups(groups []reusegroup.Group) []jsonGroup {
	out := make([]jsonGroup, 0, len(groups))
	for i := range groups {
		g := &groups[i]
		jg := jsonGroup{Proto: g.Proto.String(), LocalAddr: g.Local.Addr().String(), LocalPort: g.Local.Port(),
			UID: g.UID, Size: g.Size, Known: g.Known, Reason: g.Reason, ID: g.ID, Members: []jsonMember{}}
		if g.Prog != nil {
			jg.Program = &jsonProgram{Kind: g.Prog.Kind(), ID: g.Prog.ID}
		}
		for _, m := range g.Members {
			jm := jsonMember{Cookie: m.Socket.Cookie, UID: m.Socket.UID, RecvQ: m.Socket.RecvQ, SendQ: m.Socket.SendQ, Owners: []jsonOwner{}}
			if m.Index >= 0 {
				idx := m.Index
				jm.Index = &idx
			}
			for _, o := range m.Socket.Owners {
				jm.Owners = append(jm.Owners, jsonOwner{PID: o.PID, Comm: o.Comm, FD: o.FD})
			}
			jg.Members = append(jg.Members, jm)
		}
		out = append(out, jg)
	}
	return out
}
