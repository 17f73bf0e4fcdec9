//go:build linux && amd64

package kernelvm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGuestRunsProgram boots each fetched kernel with this test binary as
// the guest's program and checks that it ran there: its output comes back,
// its exit status too, and uname in the guest names the guest's kernel.
func TestGuestRunsProgram(t *testing.T) {
	if os.Getenv("KERNELVM_TEST_GUEST") == "1" {
		t.Skip("inside the guest")
	}
	dirs, _ := filepath.Glob(filepath.Join(CacheDir(), "*", "vmlinuz"))
	if len(dirs) == 0 {
		t.Skip("no kernels fetched (scripts/fetch-kernels)")
	}
	for _, vml := range dirs {
		dir := filepath.Dir(vml)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res, err := Run(ctx, Config{Kernel: vml, Modules: filepath.Join(dir, "modules"),
				Args: []string{"-test.run=^TestGuestSide$", "-test.v"}, Env: []string{"KERNELVM_TEST_GUEST=1"}})
			if err != nil {
				t.Fatal(err)
			}
			want, _ := os.ReadFile(filepath.Join(dir, "release"))
			if res.Release != strings.TrimSpace(string(want)) {
				t.Errorf("guest release %q, want %q", res.Release, want)
			}
			if res.ExitCode != 0 || !strings.Contains(string(res.Stdout), "guest side: "+res.Release) {
				t.Errorf("exit %d, stdout %q; console:\n%s", res.ExitCode, res.Stdout, res.Console)
			}
			t.Logf("%s booted and ran under %s in %v", res.Release, res.Accel, res.Duration.Round(time.Millisecond))
		})
	}
}
