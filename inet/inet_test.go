package inet

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestParsePortRange(t *testing.T) {
	good := map[string]PortRange{"40000-40010": {40000, 40010}, "5": {5, 5}, " 1 - 65535 ": {1, 65535}}
	for in, want := range good {
		if got, err := ParsePortRange(in); err != nil || got != want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0-5", "5-4", "1-65536", "a-b", "-", "1-2-3"} {
		if _, err := ParsePortRange(in); err == nil {
			t.Errorf("ParsePortRange(%q): want an error", in)
		}
	}
}

func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"1-2", "80", "65535-65535", "0", "9-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortRange(s)
		if err == nil && (r.Lo == 0 || r.Lo > r.Hi || r.Size() < 1 || !r.Contains(r.Lo) || !r.Contains(r.Hi)) {
			t.Fatalf("ParsePortRange(%q) = %v: accepted an invalid range", s, r)
		}
	})
}

func TestPortRangeSize(t *testing.T) {
	for _, c := range []struct {
		r    PortRange
		want int
	}{{PortRange{}, 0}, {PortRange{5, 5}, 1}, {PortRange{1, 65535}, 65535}, {PortRange{9, 1}, 0}} {
		if got := c.r.Size(); got != c.want {
			t.Errorf("%v.Size() = %d, want %d", c.r, got, c.want)
		}
	}
}

func TestUnsupported(t *testing.T) {
	err := Unsupported("SO_EXCLUSIVEADDRUSE")
	if !errors.Is(err, ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("%v: want it to wrap ErrUnsupported and errors.ErrUnsupported", err)
	}
	if want := "SO_EXCLUSIVEADDRUSE is not supported on " + runtime.GOOS; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start %q", err, want)
	}
}

func TestProtoString(t *testing.T) {
	if TCP.String() != "tcp" || UDP.String() != "udp" || Proto(1).String() != "proto(1)" {
		t.Errorf("Proto strings: %v %v %v", TCP, UDP, Proto(1))
	}
}
