package socktab

import (
	"encoding/binary"
	"testing"
)

func TestParseSocketLink(t *testing.T) {
	for in, want := range map[string]uint64{"socket:[12345]": 12345, "socket:[0]": 0, "socket:[18446744073709551615]": 1<<64 - 1} {
		got, ok := parseSocketLink([]byte(in))
		if !ok || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "socket:[]", "socket:[12a]", "pipe:[123]", "socket:[123", "/dev/null", "socket:[18446744073709551616]"} {
		if _, ok := parseSocketLink([]byte(in)); ok {
			t.Errorf("%q accepted", in)
		}
	}
}

// dirent builds one struct linux_dirent64.
func dirent(name string) []byte {
	reclen := (19 + len(name) + 1 + 7) &^ 7
	b := make([]byte, reclen)
	binary.NativeEndian.PutUint16(b[16:], uint16(reclen))
	copy(b[19:], name)
	return b
}

func TestNextDirent(t *testing.T) {
	buf := append(append(dirent("."), dirent("..")...), dirent("12")...)
	var names []string
	for len(buf) > 0 {
		name, rest, ok := nextDirent(buf)
		if !ok {
			t.Fatalf("stopped with %d bytes left", len(buf))
		}
		names = append(names, name)
		buf = rest
	}
	if len(names) != 3 || names[2] != "12" {
		t.Errorf("names %q", names)
	}
	if _, _, ok := nextDirent(dirent("x")[:10]); ok {
		t.Error("short dirent accepted")
	}
}

func FuzzParseSocketLink(f *testing.F) {
	f.Add([]byte("socket:[123]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseSocketLink(b)
		for len(b) > 0 {
			_, rest, ok := nextDirent(b)
			if !ok {
				break
			}
			if len(rest) >= len(b) {
				t.Fatal("nextDirent did not advance")
			}
			b = rest
		}
	})
}

func TestParseState(t *testing.T) {
	for name, want := range map[string]State{"bound": BoundInactive, "LISTEN": Listen, "time-wait": TimeWait, "time_wait": TimeWait, "unconn": Close, "syn-sent": SynSent} {
		got, err := ParseState(name)
		if err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", name, got, err, want)
		}
	}
	if _, err := ParseState("nope"); err == nil {
		t.Error("nope accepted")
	}
	for s := State(1); s < numStates; s++ {
		if got, err := ParseState(s.String()); err != nil || got != s {
			t.Errorf("round trip %v: %v %v", s, got, err)
		}
		if !AllStates.Has(s) {
			t.Errorf("AllStates lacks %v", s)
		}
	}
}
