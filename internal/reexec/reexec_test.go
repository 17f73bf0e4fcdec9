package reexec

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/leakcheck"
)

func TestMain(m *testing.M) {
	Register("test-echo", func(args []string) int {
		_, marked := os.LookupEnv(envMarker)
		fmt.Printf("%s parent=%v marker=%v\n", strings.Join(args, " "), Parent() == os.Getppid(), marked)
		return 3
	})
	Register("test-spawn", spawnSleeper)
	Register("test-sleep", func([]string) int {
		time.Sleep(time.Hour) // until killed
		return 0
	})
	Main()
	leakcheck.Main(m)
}

// spawnSleeper starts a test-sleep helper, prints its pid and exits
// without waiting for it.
func spawnSleeper([]string) int {
	cmd, err := Command("test-sleep")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(cmd.Process.Pid)
	return 0
}

// A helper gets its arguments, knows its parent, does not pass the
// marker on, and its exit code is the helper function's.
func TestCommandRunsHelper(t *testing.T) {
	cmd, err := Command("test-echo", "a", "b c")
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("helper exit: %v, want exit status 3", err)
	}
	if got, want := string(out), "a b c parent=true marker=false\n"; got != want {
		t.Errorf("helper said %q, want %q", got, want)
	}
}

func TestCommandUnregistered(t *testing.T) {
	if _, err := Command("nosuch"); err == nil || !strings.Contains(err.Error(), `no helper "nosuch"`) {
		t.Errorf("Command(nosuch) = %v, want an error naming the helper", err)
	}
}

// A marker naming a helper the binary lacks, or argv not naming the
// marker's helper, exits 2 with a message instead of running anything.
func TestMainBadMarker(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ marker, arg string }{
		{"nosuch:1", "nosuch"},
		{"test-echo:1", "test-sleep"},
	} {
		cmd := exec.Command(self, tc.arg)
		cmd.Env = append(os.Environ(), envMarker+"="+tc.marker)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("marker %s argv %s: %v, want exit status 2 (%s)", tc.marker, tc.arg, err, out)
		}
		if !strings.Contains(string(out), "does not have") {
			t.Errorf("marker %s argv %s: said %q", tc.marker, tc.arg, out)
		}
	}
}

// pidAlive reports whether pid is a live (not zombie) process.
func pidAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}
