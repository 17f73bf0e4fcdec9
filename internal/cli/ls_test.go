package cli

import (
	"net/netip"
	"strconv"
	"testing"
)

func TestLsWhoBadInput(t *testing.T) {
	badInputGolden(t, "bad-input-ls-who.txt", [][]string{
		{"ls", "--state", "foo"},
		{"ls", "--sport", "70000"},
		{"ls", "--uid", "-5"},
		{"ls", "--pid", "-1"},
		{"ls", "--pid", "0"},
		{"ls", "extra"},
		{"ls", "-s", "--json"},
		{"ls", "--netns", "/proc/self/status"},
		{"ls", "--netns", "/proc/self/ns/mnt"},
		{"who"},
		{"who", "0"},
		{"who", "abc"},
		{"who", "1.2.3.4"},
		{"who", "70000"},
		{"who", "300.1.1.1:80"},
		{"who", "80", "81"},
	})
}

func TestParseWhoTarget(t *testing.T) {
	for in, want := range map[string]string{"80": ":80", ":80": ":80", "127.0.0.1:80": "127.0.0.1:80", "[::1]:53": "[::1]:53"} {
		addr, port, err := parseWhoTarget(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		got := ":" + strconv.Itoa(int(port))
		if addr.IsValid() {
			got = netip.AddrPortFrom(addr, port).String()
		}
		if got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}
