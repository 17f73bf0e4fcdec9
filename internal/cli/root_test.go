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
		code, _, errOut := run(t, "", args...)
		if code != 2 {
			t.Errorf("tuple %v: exit %d, want 2", args, code)
		}
		if n := strings.Count(strings.TrimSpace(errOut), "\n"); n != 0 {
			t.Errorf("tuple %v: want one error line, got %q", args, errOut)
		}
	}
}
