package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/tuple-net/tuple/inet"
)

// The protocol: one JSON object per SOCK_SEQPACKET message each way. A
// request is at most MaxRequest bytes; the answer to a granted socket
// request carries the descriptor as SCM_RIGHTS ancillary data.

// MaxRequest is the largest request a broker reads; a longer one is refused
// and its connection closed.
const MaxRequest = 4096

// maxResponse bounds what a client reads (a list of live grants).
const maxResponse = 1 << 20

// Operations.
const (
	OpSocket = "socket" // create, bind (and listen), hand over
	OpList   = "list"   // live grants: all for root, the peer's own otherwise
)

// Request asks the broker for something. Peer identity is never part of it:
// the broker reads it from the connection (SO_PEERCRED).
type Request struct {
	Op      string     `json:"op"`
	Proto   inet.Proto `json:"proto,omitempty"`
	Address netip.Addr `json:"address,omitzero"`
	// Port 0 asks for any free port of the grant's range.
	Port    uint16   `json:"port,omitempty"`
	Listen  bool     `json:"listen,omitempty"` // TCP: listen() before handing over
	Backlog int      `json:"backlog,omitempty"`
	Options []string `json:"options,omitempty"` // reuseport, reuseaddr, v6only
	Group   string   `json:"group,omitempty"`   // only grants of this reuseport group

	opts Options // Options, parsed
}

// maxBacklog is the listen() backlog the broker uses at most (and by default).
const maxBacklog = 4096

// ParseRequest parses one request message. It is pure and strict: unknown
// fields, trailing data and impossible combinations are errors.
func ParseRequest(b []byte) (*Request, error) {
	if len(b) > MaxRequest {
		return nil, fmt.Errorf("request of %d bytes: at most %d", len(b), MaxRequest)
	}
	var r Request
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("malformed request: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("malformed request: data after the JSON object")
	}
	switch r.Op {
	case OpList:
		if r.Proto != 0 || r.Address.IsValid() || r.Port != 0 || r.Listen || r.Backlog != 0 || len(r.Options) > 0 || r.Group != "" {
			return nil, fmt.Errorf("list takes no arguments")
		}
		return &r, nil
	case OpSocket:
	case "":
		return nil, fmt.Errorf("request has no op: want %q or %q", OpSocket, OpList)
	default:
		return nil, fmt.Errorf("op %q: want %q or %q", r.Op, OpSocket, OpList)
	}
	if r.Proto == 0 { // any other value was checked by inet.Proto.UnmarshalText
		return nil, fmt.Errorf("proto is missing: want \"tcp\" or \"udp\"")
	}
	if !r.Address.IsValid() || r.Address.Zone() != "" {
		return nil, fmt.Errorf("address is missing or has a zone")
	}
	r.Address = r.Address.Unmap()
	if r.Listen && r.Proto != inet.TCP {
		return nil, fmt.Errorf("listen is for tcp only")
	}
	if r.Backlog < 0 || r.Backlog > maxBacklog || (r.Backlog != 0 && !r.Listen) {
		return nil, fmt.Errorf("backlog %d: want 1-%d with listen", r.Backlog, maxBacklog)
	}
	if len(r.Options) > 3 {
		return nil, fmt.Errorf("%d options: at most 3", len(r.Options))
	}
	var err error
	if r.opts, err = parseOptions(r.Options, r.Address); err != nil {
		return nil, fmt.Errorf("option %v", err)
	}
	if r.Group != "" && !validName(r.Group, 64) {
		return nil, fmt.Errorf("group %q: not a group name", r.Group)
	}
	return &r, nil
}

// String is the request as the audit trail and reasons show it.
func (r *Request) String() string {
	if r.Op != OpSocket {
		return r.Op
	}
	s := fmt.Sprintf("%s %s", r.Proto, netip.AddrPortFrom(r.Address, r.Port))
	if r.Listen {
		s += " listen"
	}
	for _, o := range r.Options {
		s += " " + o
	}
	if r.Group != "" {
		s += " group=" + r.Group
	}
	return s
}

// Response answers one request.
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// For a granted socket: the broker's id for it, the bound address, the
	// policy grant that allowed it and its reuseport group.
	ID     uint64         `json:"id,omitempty"`
	Local  netip.AddrPort `json:"local,omitzero"`
	Grant  int            `json:"grant,omitempty"`
	Group  string         `json:"group,omitempty"`
	Grants []LiveGrant    `json:"grants,omitempty"` // list
}

// LiveGrant is a socket the broker handed out that some process still holds.
type LiveGrant struct {
	ID     uint64         `json:"id"`
	UID    uint32         `json:"uid"`
	GID    uint32         `json:"gid"`
	PID    int32          `json:"pid"` // the process that asked for it
	Proto  inet.Proto     `json:"proto"`
	Local  netip.AddrPort `json:"local"`
	Listen bool           `json:"listen,omitempty"`
	Group  string         `json:"group,omitempty"`
	Grant  int            `json:"grant"` // index in the policy when it was granted
	Since  time.Time      `json:"since"`
	Inode  uint64         `json:"inode"`
}

// ParseResponse parses one response message.
func ParseResponse(b []byte) (*Response, error) {
	var r Response
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("malformed response from the broker: %v", err)
	}
	if !r.OK && r.Error == "" {
		return nil, fmt.Errorf("malformed response from the broker: refused without a reason")
	}
	return &r, nil
}
