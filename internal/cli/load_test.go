package cli

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/load"
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
		{"load", "-u", "--listen", "127.0.0.1:9", "--hold", "1s"},
		{"load", "-u", "--to", "127.0.0.1:80", "--conns", "0"},
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

// --per-proc above what a process may hold is refused up front, naming the
// file limit, instead of workers failing later with EMFILE.
func TestLoadPerProcAboveFileLimit(t *testing.T) {
	most, err := load.PerProcMax()
	if err != nil {
		t.Skipf("no file limit here: %v", err)
	}
	code, out, errOut := run(t, "", "load", "--to", "127.0.0.1:80", "--conns", "1", "--per-proc", strconv.Itoa(most+1))
	want := fmt.Sprintf("tuple: load: --per-proc must be 1-%d (the file limit RLIMIT_NOFILE %d less %d descriptors a worker keeps for itself), got %d\n",
		most, most+load.Reserve, load.Reserve, most+1)
	if code != 2 || out != "" || errOut != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errOut, want)
	}
}
