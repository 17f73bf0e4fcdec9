package kernelvm

import (
	"fmt"
	"runtime"
	"time"

	"github.com/tuple-net/tuple/inet"
)

// Config describes one guest run.
type Config struct {
	Kernel  string   // path of the kernel image (vmlinuz)
	Modules string   // directory of the kernel's modules (.ko) and modules.order; empty for none
	Exe     string   // the program to run inside (it must call Guest first thing)
	Args    []string // its arguments (without argv[0])
	Env     []string // its environment, beside PATH and HOME
	Tools   []string // other executables the program runs (ip, ...), put on the guest's PATH
	Files   map[string][]byte
	MemMiB  int           // guest memory; 0 means 768
	Timeout time.Duration // for the whole run, boot included; 0 means 10 minutes
	// Accel forces "kvm" or "tcg"; empty chooses KVM when /dev/kvm works,
	// falling back to TCG when a KVM guest does not come up.
	Accel string
}

// Result is how a guest run ended.
type Result struct {
	ExitCode int    // the program's exit status
	Stdout   []byte // the program's standard output
	// Console is the guest's console: the kernel's messages and the
	// program's standard error.
	Console  []byte
	Release  string        // the guest kernel's uname -r
	Accel    string        // "kvm" or "tcg"
	Duration time.Duration // from qemu's start to its exit
}

// ErrNotSupported is returned by Run where guests cannot run.
// It wraps inet.ErrUnsupported.
var ErrNotSupported = fmt.Errorf("kernelvm: booting kernels under qemu works on linux/amd64 only, not on %s/%s: %w",
	runtime.GOOS, runtime.GOARCH, inet.ErrUnsupported)
