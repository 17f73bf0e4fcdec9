package cli

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// initAllocs matches a package's line of GODEBUG=inittrace=1.
var initAllocs = regexp.MustCompile(`(?m)^init (github\.com/tuple-net/tuple/\S+) @.* (\d+) allocs$`)

// Every command pays for every package's initialization: none of ours may
// do real work at start-up (lab's parser patterns, compiled at init, made
// 1,840 allocations on each tuple --help). Allocations, unlike time, do
// not vary between runs.
func TestStartupInitIsSmall(t *testing.T) {
	const most = 500
	cmd := exec.Command(tupleBinary(t), "--help")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tuple --help: %v\n%s", err, out)
	}
	ms := initAllocs.FindAllSubmatch(out, -1)
	if len(ms) == 0 {
		t.Fatalf("no init lines of ours in GODEBUG=inittrace=1's output:\n%s", out)
	}
	for _, m := range ms {
		if n, _ := strconv.Atoi(string(m[2])); n > most {
			t.Errorf("package %s allocates %d times at start-up, more than %d: make that work lazy (sync.OnceValue)", m[1], n, most)
		}
	}
}

// The tuple binary leaves out the Prometheus endpoints' libraries, which
// took half its start-up (Services): a new import of them anywhere under
// cmd/tuple brings those 8-9 ms back to every command.
func TestTupleLeavesOutPrometheusStack(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/tuple-net/tuple/cmd/tuple").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps cmd/tuple: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, heavy := range []string{"github.com/prometheus/", "google.golang.org/protobuf/", "net/http", "crypto/tls"} {
			if strings.HasPrefix(dep, heavy) {
				t.Errorf("cmd/tuple links %s: only tupled may (internal/tupled)", dep)
			}
		}
	}
}
