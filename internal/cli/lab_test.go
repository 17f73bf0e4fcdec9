package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/lab"
)

func TestLabListAndPrint(t *testing.T) {
	code, out, _ := run(t, "", "lab", "--list")
	if code != 0 {
		t.Fatalf("tuple lab --list: exit %d", code)
	}
	for _, g := range lab.Groups() {
		if !strings.Contains(out, g+" ") {
			t.Errorf("--list lacks group %s:\n%s", g, out)
		}
	}
	if !strings.HasPrefix(out, "seed ") {
		t.Errorf("--list does not start with seed:\n%s", out)
	}
	// Each group's first sentence, whole (nat's runs on past its first line).
	if !strings.Contains(out, " scenarios  Source NAT: can \"some NAT trickery\" share a source port?\n") {
		t.Errorf("--list cuts nat's description:\n%s", out)
	}
	code, out, _ = run(t, "", "lab", "--print", "seed")
	if code != 0 || !strings.Contains(out, "[nc-double-p]") {
		t.Fatalf("tuple lab --print seed: exit %d\n%s", code, out)
	}
	if _, err := lab.Parse("printed.lab", []byte(out)); err != nil {
		t.Errorf("printed seed does not parse: %v", err)
	}
}

func TestLabBadInputExits2(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "scenarios.lab")
	os.WriteFile(bad, []byte("# ok so far\n[x]\nA socket tcp4\nB socket tcp4 reuse\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lab", bad}, bad + `:4: unknown option "reuse"`},
		{[]string{"lab", "--print", "nope"}, `unknown group "nope" (groups: seed, `},
		{[]string{"lab", "nope"}, `"nope" is neither a file nor a built-in group (groups: seed, `},
		{[]string{"lab", filepath.Join(dir, "missing.lab")}, "missing.lab: no such file or directory"},
		{[]string{"lab", dir}, "not a regular file"},
		{[]string{"lab", "--json", "--markdown", "seed"}, "none of the others can be"},
		{[]string{"lab", "--list", "seed"}, "--list takes no other arguments"},
	} {
		wantLabBadInput(t, tc.want, tc.args...)
	}
	// Every flag's bad value, whether cobra or tuple lab finds it.
	badInputGolden(t, "bad-input-lab.txt", [][]string{
		{"lab", "--kernel-jobs", "0", "seed"},
		{"lab", "--repeat", "0", "seed"},
		{"lab", "--repeat", "x", "seed"},
		{"lab", "--timeout", "0s", "seed"},
		{"lab", "--helper-timeout", "-1s", "seed"},
		{"lab", "--kernel-version", "six", "seed"},
		{"lab", "--print"},
	})
}

// wantLabBadInput is wantBadInput for tuple lab, whose errors all name the
// command ("tuple: lab: ..."), as cobra's flag errors do.
func wantLabBadInput(t *testing.T, want string, args ...string) {
	t.Helper()
	if line := wantBadInput(t, want, args...); !strings.HasPrefix(line, "tuple: lab: ") {
		t.Errorf("tuple %v: %q does not start with \"tuple: lab: \"", args, line)
	}
}

// A directory named like a built-in group (the source tree's nat/) does not
// hide the group; a file of that name still wins, as any file does.
func TestLabGroupBesideDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "nat"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "udp"), []byte("[mine]\nA socket udp4 => ok\n"), 0o644)
	t.Chdir(dir)
	srcs, err := labSources([]string{"nat", "udp"})
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 2 || srcs[0].name != lab.BuiltinFile("nat") || srcs[1].name != "udp" {
		t.Errorf("sources = %v, %v; want the built-in nat group and the file udp", srcs[0].name, srcs[1].name)
	}
}
