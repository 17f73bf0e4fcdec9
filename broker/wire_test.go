package broker

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	r, err := ParseRequest([]byte(`{"op":"socket","proto":"tcp","address":"::ffff:127.0.0.1","port":80,"listen":true,"backlog":10,"options":["reuseport"],"group":"web"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Address.String() != "127.0.0.1" || r.Port != 80 || !r.Listen || !r.opts.ReusePort || r.String() != "tcp 127.0.0.1:80 listen reuseport group=web" {
		t.Errorf("parsed %+v (%s)", r, r)
	}
	for _, tc := range []struct{ in, want string }{
		{``, "malformed"},
		{`{"op":"socket"`, "malformed"},
		{`{"op":"socket","proto":"tcp","address":"127.0.0.1","uid":0}`, "unknown field"},
		{`{"op":"socket","proto":"tcp","address":"127.0.0.1"} {}`, "data after"},
		{`{"op":"list","port":1}`, "list takes no arguments"},
		{`{"op":"rm"}`, `op "rm"`},
		{`{}`, "no op"},
		{`{"op":"socket","proto":"icmp","address":"127.0.0.1"}`, `protocol "icmp"`},
		{`{"op":"socket","proto":"tcp"}`, "address is missing"},
		{`{"op":"socket","proto":"tcp","address":"nonsense"}`, "malformed"},
		{`{"op":"socket","proto":"tcp","address":"127.0.0.1","port":70000}`, "malformed"},
		{`{"op":"socket","proto":"udp","address":"127.0.0.1","listen":true}`, "tcp only"},
		{`{"op":"socket","proto":"tcp","address":"127.0.0.1","backlog":5}`, "backlog"},
		{`{"op":"socket","proto":"tcp","address":"127.0.0.1","options":["v6only"]}`, "IPv6"},
		{`{"op":"socket","proto":"tcp","address":"127.0.0.1","options":["a","b","c","d"]}`, "at most 3"},
		{`{"op":"socket","proto":"tcp","address":"127.0.0.1","group":"../x"}`, "not a group name"},
		{`{"op":"socket","proto":"tcp","address":"127.0.0.1","group":"` + strings.Repeat("x", MaxRequest) + `"}`, "at most"},
	} {
		if _, err := ParseRequest([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseRequest(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"op":"socket","proto":"tcp","address":"127.0.0.1","port":80,"listen":true}`))
	f.Add([]byte(`{"op":"list"}`))
	f.Add([]byte(`{"op":"socket","proto":"udp","address":"::","options":["v6only"],"group":"g"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		// A request that parses survives a round trip unchanged.
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseRequest(again)
		if err != nil {
			t.Fatalf("%q parsed, its re-encoding %q did not: %v", b, again, err)
		}
		if r.String() != r2.String() || r.opts != r2.opts {
			t.Fatalf("round trip changed %s to %s", r, r2)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte(`{"ok":true,"id":3,"local":"127.0.0.1:80","grant":1}`))
	f.Add([]byte(`{"ok":false,"error":"no"}`))
	f.Add([]byte(`{"ok":true,"grants":[{"id":1,"uid":2,"gid":3,"pid":4,"proto":"tcp","local":"[::]:80","grant":1,"since":"2026-01-01T00:00:00Z","inode":5}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err == nil && !r.OK && r.Error == "" {
			t.Fatalf("refusal without a reason accepted: %q", b)
		}
	})
}
