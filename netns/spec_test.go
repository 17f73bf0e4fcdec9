package netns

import "testing"

func TestParseSpec(t *testing.T) {
	for in, want := range map[string]Spec{
		"all":                {All: true},
		"pod-a":              {Name: "pod-a"},
		"1234":               {PID: 1234},
		"/proc/1/ns/net":     {Path: "/proc/1/ns/net"},
		"./x/../run/netns/a": {Path: "run/netns/a"},
	} {
		got, err := ParseSpec(in)
		if err != nil || got != want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "12ab", "-1", ".."} {
		if _, err := ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q): no error", bad)
		}
	}
}
