package sockfacts

import (
	"net/netip"
	"strconv"

	"github.com/tuple-net/tuple/inet"
)

// Member is one socket of a SO_REUSEPORT group as the kernel holds it
// (struct sock_reuseport), read by ReadGroups.
type Member struct {
	Proto  inet.Proto
	Cookie uint64 // the socket cookie, to join with the socket table
	Local  netip.AddrPort
	State  uint8 // kernel state number (TCP_LISTEN=10; UDP sockets are 7)
	// GroupID is the kernel's reuseport_id: members with the same id are
	// one group.
	GroupID uint32
	// Index is the member's place in the group's socks array: what the
	// kernel's hash and a program's return value choose by. -1 when the
	// socket is not among the live members or beyond the MaxIndex read.
	Index int
	// Members and Closed are the group's num_socks and num_closed_socks
	// (TCP sockets that stopped listening but stay bound).
	Members, Closed int
	// Prog is the group's steering program, when Attached.
	Prog     Program
	Attached bool
}

// MaxIndex is how far into a group's socks array ReadGroups looks for a
// member's index.
const MaxIndex = 128

// Program is a BPF program attached to a reuseport group.
type Program struct {
	// Type is the kernel's enum bpf_prog_type: 21 for an eBPF sk_reuseport
	// program; a classic BPF program (SO_ATTACH_REUSEPORT_CBPF) is
	// converted by the kernel and has no id.
	Type uint32
	// AttachType is the expected attach type: 39 select, 40
	// select_or_migrate (the kernel migrates closing members'
	// connections through the program).
	AttachType uint32
	// ID is the program id (bpftool prog show id N); 0 for classic BPF.
	ID uint32
}

// Kind names the program as tuple shows it.
func (p Program) Kind() string {
	switch {
	case p.Type == progTypeSkReuseport && p.AttachType == attachSelectOrMigrate:
		return "sk_reuseport/migrate"
	case p.Type == progTypeSkReuseport:
		return "sk_reuseport"
	case p.ID == 0:
		return "classic BPF"
	}
	return "bpf type " + strconv.FormatUint(uint64(p.Type), 10)
}

const (
	progTypeSkReuseport   = 21 // BPF_PROG_TYPE_SK_REUSEPORT
	attachSelectOrMigrate = 40 // BPF_SK_REUSEPORT_SELECT_OR_MIGRATE
)
