package cli

import (
	"bytes"
	"fmt"
	"regexp"
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
	code, out, _ := run(t, "", "--help")
	if code != 0 {
		t.Errorf("tuple --help: code %d", code)
	}
	golden(t, "help.txt", out)
	code, out, _ = run(t, "", "completion", "bash")
	if first, _, _ := strings.Cut(out, "\n"); code != 0 || !regexp.MustCompile(`^# bash completion V2 for tuple +-\*- shell-script -\*-$`).MatchString(first) {
		t.Errorf("tuple completion bash: code %d, first line %q", code, first)
	}
}

func TestBadInputExits2(t *testing.T) {
	badInputGolden(t, "bad-input-root.txt", [][]string{{"no-such-command"}, {"version", "extra"}, {"--no-such-flag"}})
}

// TestMistypedInputExits2 covers what a sweep of the commands found
// accepted or worded over several lines: a mistyped command (one line, with
// the commands near it), help for no command, an empty string given to a
// flag (read as the flag left out: lab --print "" ran the whole library),
// and hosts that are neither an address nor a name (sent to the resolver,
// then exit 1).
func TestMistypedInputExits2(t *testing.T) {
	badInputGolden(t, "bad-input-mistyped.txt", [][]string{
		{"nat"}, {"wh", "80"}, {""},
		{"help", "nosuch"}, {"help", "ls", "extra"},
		{"lab", "--print", ""}, {"connect", "-w", "", "127.0.0.1", "1"},
		{"why", "bind", "--dev", "", "127.0.0.1:80"}, {"ls", "--netns", ""},
		{"connect", "[::1", "1"}, {"connect", "[::1]:5003", "5003"}, {"connect", "127.0.0.1:80", "1"},
		{"connect", "-s", "[::1", "::1", "1"}, {"listen", "-n", "[::1", "5010"},
		{"listen", "999.1.1.1", "5000"},
		{"exporter", "--netns", "no-such-netns-x"}, {"ls", "src", "fe80::1%lo"},
	})
	if code, out, _ := run(t, "", "help", "ls"); code != 0 || !strings.HasPrefix(out, "ls lists") {
		t.Errorf("tuple help ls: exit %d, stdout %.40q", code, out)
	}
}

// badInputGolden runs tuple with each args as bad input (exit 2, one line
// on stderr) and compares every line, under the command it answers, with
// testdata/golden/NAME.
func badInputGolden(t *testing.T, name string, cases [][]string) {
	t.Helper()
	var b strings.Builder
	for _, args := range cases {
		fmt.Fprintf(&b, "$ tuple %s\n%s", strings.Join(args, " "), wantBadInput(t, "", args...))
	}
	golden(t, name, b.String())
}

// wantBadInput runs tuple with args and wants what every command promises
// for bad input: exit 2 and one line on stderr, containing want. It
// returns that line.
func wantBadInput(t *testing.T, want string, args ...string) string {
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
	return errOut
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
