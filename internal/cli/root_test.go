package cli

import (
	"bytes"
	"strings"
	"testing"
)

// run executes tuple with args and returns exit code, stdout and stderr.
func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func TestVersionAndHelp(t *testing.T) {
	if code, out, _ := run(t, "", "version"); code != 0 || !strings.HasPrefix(out, "tuple ") {
		t.Errorf("tuple version: code %d, out %q", code, out)
	}
	if code, out, _ := run(t, "", "--help"); code != 0 || !strings.Contains(out, "Available Commands") {
		t.Errorf("tuple --help: code %d, out %q", code, out)
	}
	if code, out, _ := run(t, "", "completion", "bash"); code != 0 || !strings.Contains(out, "bash completion") {
		t.Errorf("tuple completion bash: code %d", code)
	}
}

func TestBadInputExits2(t *testing.T) {
	for _, args := range [][]string{{"no-such-command"}, {"version", "extra"}, {"--no-such-flag"}} {
		wantBadInput(t, "", args...)
	}
}

// wantBadInput runs tuple with args and wants what every command promises
// for bad input: exit 2 and one line on stderr, containing want.
func wantBadInput(t *testing.T, want string, args ...string) {
	t.Helper()
	code, out, errOut := run(t, "", args...)
	if code != 2 {
		t.Errorf("tuple %v: exit %d, want 2 (stdout %q, stderr %q)", args, code, out, errOut)
	}
	if errOut == "" || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("tuple %v: want one error line, got %q", args, errOut)
	}
	if !strings.Contains(errOut, want) {
		t.Errorf("tuple %v: stderr %q, want it to contain %q", args, errOut, want)
	}
}

// Regressions: each of these was accepted (or exited 0) and is bad input.
func TestValidationExits2(t *testing.T) {
	for _, args := range [][]string{
		{"connect", "127.0.0.1", "+80"},
		{"connect", "-z", "127.0.0.1", "+80"},
		{"listen", "+80"},
		{"ports", "--hog-share", "NaN"},
		{"exporter", "--hog-share", "NaN"},
		{"ls", "--uid", "-1"},
		{"listen", "-e", "", "0"},
		{"listen", "-e", " ", "0"},
		{"completion", "nosuch"},
		{"completion"},
		{"who", "[fe80::1%nosuch-zone]:80"},
		{"connect", "-n", "localhost", "80"},
		{"connect", "-n", "127.0.0.1", "http"},
		{"connect", "-N", "--no-shutdown", "127.0.0.1", "80"},
		{"connect", "-q", "x", "127.0.0.1", "80"},
		{"connect", "127.0.0.1", "80", "81"},
		{"listen", "-p", "80", "127.0.0.1", "81"},
		{"listen", "--max-conns", "-1", "-k", "0"},
		{"listen", "-k", "-q", "1", "0"},
	} {
		code, out, errOut := run(t, "", args...)
		if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 {
			t.Errorf("tuple %q: exit %d, stdout %q, stderr %q; want 2 and one line", args, code, out, errOut)
		}
	}
}
