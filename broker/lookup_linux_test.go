package broker

import (
	"os/exec"
	"testing"
)

func TestParseGetentID(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"alice:x:1000:1000:Alice:/home/alice:/bin/sh\n", 1000, true},
		{"staff:x:50:bob,carol\n", 50, true},
		{"root:x:0:0:root:/root:/bin/bash\nother:x:1:1::/:/bin/sh\n", 0, true},
		{"", 0, false},
		{"alice:x\n", 0, false},
		{"alice:x:-1:0::/:/bin/sh\n", 0, false},
		{"alice:x:4294967296:0::/:/bin/sh\n", 0, false},
	} {
		got, err := parseGetentID([]byte(c.in))
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseGetentID(%q) = %d, %v; want %d (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
}

func FuzzParseGetentID(f *testing.F) {
	f.Add([]byte("alice:x:1000:1000::/home/alice:/bin/sh\n"))
	f.Add([]byte("g:x:7:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseGetentID(b)
		if err == nil && (n < 0 || n > 1<<32-1) {
			t.Errorf("parseGetentID(%q) = %d", b, n)
		}
	})
}

// TestLookupIDThroughGetent: a name the C library or /etc/passwd knows,
// and the same name through getent, give the same id; a name nobody
// knows is an error naming it.
func TestLookupIDThroughGetent(t *testing.T) {
	if _, err := exec.LookPath("getent"); err != nil {
		t.Skip("no getent on this machine")
	}
	for _, c := range []struct {
		name, db string
		isUser   bool
	}{{"root", "passwd", true}, {"root", "group", false}} {
		want, err := lookupID(c.name, c.isUser)
		if err != nil {
			t.Fatal(err)
		}
		got, err := getentID(c.db, c.name)
		if err != nil || got != want {
			t.Errorf("getent %s %s = %d, %v; lookupID said %d", c.db, c.name, got, err, want)
		}
	}
	if _, err := lookupID("no-such-user-tuple", true); err == nil {
		t.Error("lookupID of an unknown user: no error")
	}
	if _, err := getentID("passwd", "-x"); err == nil {
		t.Error("getent of a name starting with '-': no error")
	}
	if _, err := lookupID("no-such-group-tuple", false); err == nil {
		t.Error("lookupID of an unknown group: no error")
	}
}
