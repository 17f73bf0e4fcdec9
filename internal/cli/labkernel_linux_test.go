//go:build linux && amd64

package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/testenv"
	"github.com/tuple-net/tuple/kernelvm"
)

// TestLabKernelJobs runs the seed group on a fetched 6.12 guest and the
// host at once (--kernel-jobs 2): both runs complete, the model agrees with
// each kernel on every line, and the table keeps the order given, not the
// order the runs finished in (the host finishes first).
func TestLabKernelJobs(t *testing.T) {
	bin := tupleBinary(t)
	if _, err := os.Stat(filepath.Join(kernelvm.CacheDir(), "6.12", "vmlinuz")); err != nil {
		t.Skip("kernel 6.12 not fetched (scripts/fetch-kernels)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testenv.Missing(t, "needs qemu-system-x86_64 to boot the guest")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "lab", "--kernel", "6.12,host", "--kernel-jobs", "2", "seed")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tuple lab --kernel 6.12,host --kernel-jobs 2 seed: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.Bytes(), stderr.Bytes())
	}
	// The summary table: KERNEL RELEASE RUN LINES MODEL-AGREED ...
	row := regexp.MustCompile(`(?m)^(6\.12|host)\s+\S+\s+(?:qemu \w+|here)\s+(\d+)\s+(\d+)\s`)
	rows := row.FindAllSubmatch(stdout.Bytes(), -1)
	if len(rows) != 2 || string(rows[0][1]) != "6.12" || string(rows[1][1]) != "host" {
		t.Fatalf("want the rows 6.12 then host in the summary; stdout:\n%s", stdout.Bytes())
	}
	for _, r := range rows {
		if !bytes.Equal(r[2], r[3]) || string(r[2]) == "0" {
			t.Errorf("%s: %s lines, the model agreed on %s", r[1], r[2], r[3])
		}
	}
}
