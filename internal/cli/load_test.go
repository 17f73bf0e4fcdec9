package cli

import (
	"strings"
	"testing"
)

func TestLoadBadInputExits2(t *testing.T) {
	for _, args := range [][]string{
		{"load"},
		{"load", "--to", "127.0.0.1:80"},
		{"load", "--to", "127.0.0.1:80", "--conns", "0"},
		{"load", "--to", "127.0.0.1", "--conns", "1"},
		{"load", "--to", "127.0.0.1:0", "--conns", "1"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--policy", "fixed:0"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--policy", "sharing"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--from", "127.0.0.1", "--policy", "kernel"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--from", "::1"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--from", "localhost"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--per-proc", "-1"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--hold", "-1s"},
		{"load", "--listen", "127.0.0.1:9"},
		{"load", "--listen", "127.0.0.1", "--hold", "1s"},
		{"load", "--listen", "127.0.0.1:9", "--hold", "1s", "--procs", "0"},
		{"load", "--listen", "127.0.0.1:9", "--hold", "1s", "--to", "127.0.0.1:80"},
		{"load", "--to", "127.0.0.1:80", "--conns", "x"},
		{"load", "--to", "127.0.0.1:80", "--conns", "100000", "--per-proc", "10"},
	} {
		code, out, errOut := run(t, "", args...)
		if code != 2 {
			t.Errorf("tuple %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), code, errOut)
		}
		if out != "" || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || errOut == "" {
			t.Errorf("tuple %s: want one error line and no output, got %q / %q", strings.Join(args, " "), out, errOut)
		}
	}
}
