package cli

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Whole outputs are compared with golden files in testdata/golden rather
// than by fragments, so any change to what a user sees shows up as a diff;
// `go test ./internal/cli -run TEST -update` rewrites them after a change
// that is meant. (Script tests, testdata/script, serve where the commands
// themselves are the test: tuple ls against ss; here the setup is Go code
// building sockets in a namespace, or a fake socket table.)
var update = flag.Bool("update", false, "rewrite testdata/golden files with the current output")

// golden compares got with testdata/golden/NAME, or writes it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/cli -run '^%s$' -update to create it)", err, t.Name())
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("output differs from %s (-want +got); if the change is meant, run go test ./internal/cli -run '^%s$' -update:\n%s", path, t.Name(), d)
	}
}

// runIDs matches what differs between runs: the test's pid, the
// descriptor numbers it got, and the id the kernel gave a reuseport group.
var runIDs = regexp.MustCompile(`pid=\d+|fd=\d+|pid \d+|, id \d+,`)

// stable replaces pids, descriptor numbers and group ids with placeholders.
func stable(s string) string {
	return runIDs.ReplaceAllStringFunc(s, func(m string) string {
		switch {
		case m[:4] == "pid=":
			return "pid=PID"
		case m[:3] == "fd=":
			return "fd=FD"
		case m[:4] == "pid ":
			return "pid PID"
		}
		return ", id ID,"
	})
}
