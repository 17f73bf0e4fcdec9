package cli

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLabKernelBadInputExits2(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("TUPLE_KERNELS", cache)
	os.MkdirAll(filepath.Join(cache, "6.1"), 0o755)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lab", "--kernel", "5.10", "seed"}, `--kernel: kernel "5.10": not in ` + cache + ` (scripts/fetch-kernels fetches 5.10, 6.1 and 6.12), and not a path`},
		{[]string{"lab", "--kernel", "host,,6.1", "seed"}, `--kernel: an empty name in "host,,6.1"`},
		{[]string{"lab", "--kernel", "host,host", "seed"}, "--kernel: host given twice"},
		{[]string{"lab", "--kernel", filepath.Join(cache, "6.1"), "seed"}, "a directory, not a kernel image"},
		{[]string{"lab", "--kernel", "host", "--markdown", "seed"}, "none of the others can be"},
		{[]string{"lab", "--kernel", "host", "--kernel-jobs", "0", "seed"}, "--kernel-jobs 0: want 1-16"},
		{[]string{"lab", "--kernel-version", "six", "seed"}, `--kernel-version: kernel version "six": want MAJOR.MINOR[.PATCH]`},
		{[]string{"why", "bind", "--kernel-version", "6", "127.0.0.1:80"}, `--kernel-version: kernel version "6"`},
	} {
		if tc.args[0] == "lab" {
			wantLabBadInput(t, tc.want, tc.args...)
			continue
		}
		wantBadInput(t, tc.want, tc.args...)
	}
}

func TestGuestSummary(t *testing.T) {
	console := []byte("[    1.2] random: crng init done\r\n78 scenarios, 495 lines: 494 ok, 1 where ...\r\nkernelvm: exit 1\r\n")
	if n, ok := guestSummary(console); !ok || n != 495 {
		t.Errorf("guestSummary = %d, %v; want 495, true", n, ok)
	}
	if _, ok := guestSummary([]byte("lab: [x]: helper died\n")); ok {
		t.Error("a console without the summary line was read as complete")
	}
}
