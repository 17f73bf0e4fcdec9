package reexec

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// A helper whose parent exits without stopping it is killed by the
// parent-death signal: nothing is left running.
func TestHelperDiesWithParent(t *testing.T) {
	cmd, err := Command("test-spawn")
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("spawner: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("spawner said %q", out)
	}
	// The kernel sends SIGKILL as the spawner exits; the orphan is then
	// reaped by init. Poll /proc: no event tells another process's end.
	deadline := time.Now().Add(5 * time.Second)
	for pidAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("helper %d still running 5s after its parent exited", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
