package cli

import (
	"strings"
	"testing"
)

func TestWhyBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"why"},
		{"why", "bind"},
		{"why", "bind", "localhost:80"},
		{"why", "bind", "127.0.0.1"},
		{"why", "bind", "127.0.0.1:70000"},
		{"why", "bind", "[fe80::1%lo]:80"},
		{"why", "connect", "127.0.0.1:0"},
		{"why", "connect", "0.0.0.0:80"},
		{"why", "connect", "--from", "bad", "127.0.0.1:80"},
		{"why", "connect", "--from", "127.0.0.1:5000", "[::1]:80"},
		{"why", "bind", "--v6only", "127.0.0.1:80"},
		{"why", "bind", "--bind-no-port", "127.0.0.1:80"},
		{"why", "listen", "-u", "127.0.0.1:80"},
		{"why", "bind", "--uid", "-2", "127.0.0.1:80"},
		{"why", "bind", "--dev", "no-such-if0", "127.0.0.1:80"},
		{"why", "bind", "--no-such-flag", "127.0.0.1:80"},
	} {
		code, out, errOut := run(t, "", args...)
		if code != 2 {
			t.Errorf("tuple %v: exit %d, want 2 (out %q, err %q)", args, code, out, errOut)
		}
		if n := strings.Count(strings.TrimSpace(errOut), "\n"); n != 0 || errOut == "" {
			t.Errorf("tuple %v: want one error line, got %q", args, errOut)
		}
	}
}
