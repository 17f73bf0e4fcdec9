package socktab

import (
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

func FuzzParseSocketLink(f *testing.F) {
	f.Add([]byte("socket:[123]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseSocketLink(b)
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
