package cli

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// tuple exporter on a port another program listens on reports it as
// tuple listen does: the operation, the address and the errno in words on
// one line, then a hint naming what holds the port and why (from the socket
// table and the rules model), with none of listen's flags.
func TestExporterListenInUse(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	holder := startIn(t, ns, false, "tuple", "listen", "-k", "-v", "10.0.0.1", "9779").run(nil)
	holder.waitStderr("listening on 10.0.0.1:9779")
	exp := startIn(t, ns, false, "tuple", "exporter", "--listen", "10.0.0.1:9779").run(nil)
	if code := exp.wait(20 * time.Second); code != 1 {
		t.Errorf("exporter on a port in use: exit %d, want 1; stderr %s", code, exp.stderr.String())
	}
	golden(t, "exporter-listen-in-use.txt", stable(exp.stderr.String()))
}

// tuple hands exporter to the tupled beside it, through a symlink too, and
// says what is missing, exit 1, when there is none (nor one in PATH).
func TestExporterForwardsToTupled(t *testing.T) {
	bin := tupleBinary(t)
	lone := filepath.Join(t.TempDir(), "tuple")
	if err := os.Symlink(bin, lone); err != nil {
		t.Fatal(err)
	}
	// run starts tuple exporter, stops it with SIGTERM once it serves, and
	// returns its exit code and standard error.
	run := func(path string) (int, string) {
		cmd := exec.Command(path, "exporter", "--listen", "127.0.0.1:0", "--kernel-facts=false")
		cmd.Env = append(os.Environ(), "PATH=/nonexistent")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
		defer timer.Stop()
		var errOut strings.Builder
		lines := bufio.NewScanner(stderr)
		for lines.Scan() {
			errOut.WriteString(lines.Text() + "\n")
			if strings.Contains(lines.Text(), "serving http://") {
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), errOut.String()
	}
	// Through a symlink in another directory: tupled beside the file it names.
	if code, errOut := run(lone); code != 0 || !strings.Contains(errOut, "tuple exporter: serving http://127.0.0.1:") {
		t.Errorf("tuple exporter beside tupled: exit %d, stderr %q; want it served and stopped, exit 0", code, errOut)
	}
	// A copy alone.
	alone := filepath.Join(t.TempDir(), "tuple")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(alone, b, 0o755); err != nil {
		t.Fatal(err)
	}
	want := "tuple: exporter runs in tupled, tuple with the Prometheus endpoints: no tupled beside " + alone + " or in PATH"
	if code, errOut := run(alone); code != 1 || !strings.HasPrefix(errOut, want) || strings.Count(errOut, "\n") != 1 {
		t.Errorf("tuple exporter without tupled: exit %d, stderr %q; want 1 and one line starting %q", code, errOut, want)
	}
	// A tuple binary named tupled beside it: handed over once, not forever.
	if err := os.WriteFile(filepath.Join(filepath.Dir(alone), "tupled"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	want = "tuple: exporter: " + alone + " handed it to " + filepath.Join(filepath.Dir(alone), "tupled") + ", which cannot run it either"
	if code, errOut := run(alone); code != 1 || !strings.HasPrefix(errOut, want) || strings.Count(errOut, "\n") != 1 {
		t.Errorf("tuple exporter beside a tuple named tupled: exit %d, stderr %q; want 1 and one line starting %q", code, errOut, want)
	}
}
