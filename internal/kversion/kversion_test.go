package kversion

import "testing"

func TestParseRelease(t *testing.T) {
	for _, c := range []struct {
		in   string
		want [2]int
		ok   bool
	}{
		{"6.1.0-57-cloud-amd64", [2]int{6, 1}, true},
		{"5.10.0-46-cloud-amd64", [2]int{5, 10}, true},
		{"6.12.118+deb13-cloud-amd64", [2]int{6, 12}, true},
		{"6.18", [2]int{6, 18}, true},
		{"6.8-rc1", [2]int{6, 8}, true},
		{"6", [2]int{}, false},
		{"x.1", [2]int{}, false},
		{"6.x", [2]int{}, false},
		{"-1.2", [2]int{}, false},
		{"", [2]int{}, false},
	} {
		if got, ok := parseRelease(c.in); got != c.want || ok != c.ok {
			t.Errorf("parseRelease(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func FuzzParseRelease(f *testing.F) {
	f.Add("6.1.0-57-cloud-amd64")
	f.Add("5.10")
	f.Fuzz(func(t *testing.T, s string) {
		if v, ok := parseRelease(s); ok && (v[0] < 0 || v[1] < 0) {
			t.Errorf("parseRelease(%q) = %v: negative", s, v)
		}
	})
}
