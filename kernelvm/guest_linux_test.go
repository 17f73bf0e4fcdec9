//go:build linux && amd64

package kernelvm

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGuestSide runs inside the guest (TestGuestRunsProgram starts it
// there): it prints the kernel it runs on and checks the modules loaded.
func TestGuestSide(t *testing.T) {
	if os.Getenv("KERNELVM_TEST_GUEST") != "1" {
		t.Skip("runs inside a kernelvm guest only")
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("guest side: %s\n", unix.ByteSliceToString(u.Release[:]))
	mods, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("modules:\n%s", mods)
}
