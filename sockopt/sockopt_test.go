package sockopt

import "testing"

func TestParsePortRange(t *testing.T) {
	good := map[string]PortRange{"40000-40010": {40000, 40010}, "5": {5, 5}, " 1 - 65535 ": {1, 65535}}
	for in, want := range good {
		if got, err := ParsePortRange(in); err != nil || got != want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0-10", "10-5", "1-65536", "a-b", "-", "1-2-3"} {
		if _, err := ParsePortRange(in); err == nil {
			t.Errorf("ParsePortRange(%q): want an error", in)
		}
	}
}

func FuzzParsePortRange(f *testing.F) {
	f.Add("1-2")
	f.Add("65535")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortRange(s)
		if err == nil && (r.Lo == 0 || r.Lo > r.Hi) {
			t.Fatalf("ParsePortRange(%q) = %v: accepted an invalid range", s, r)
		}
	})
}
