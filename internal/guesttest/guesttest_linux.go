// Package guesttest runs a package's test binary inside each kernel
// scripts/fetch-kernels fetched (5.10, 6.1, 6.12), booted under qemu by
// kernelvm, so a test written for the host checks the kernels people run.
// The package's TestMain must call kernelvm.Guest first.
package guesttest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tuple-net/tuple/kernelvm"
)

// InGuest is set in the guest's environment, so the test that boots the
// guests skips itself there.
const InGuest = "TUPLE_IN_GUEST"

// Run boots every fetched kernel with this test binary as the guest's
// program (cfg without Kernel and Modules; its Tools named as on PATH,
// "ip", or given as paths), one parallel subtest per kernel, and hands
// check the run's result. It is opt-in: it skips unless
// optIn is "1" in the environment (.ci/run sets it for its own step), as
// under TCG each kernel takes tens of seconds of one core.
func Run(t *testing.T, optIn string, cfg kernelvm.Config, check func(t *testing.T, res kernelvm.Result)) {
	t.Helper()
	if os.Getenv(InGuest) == "1" {
		t.Skip("inside a guest")
	}
	if os.Getenv(optIn) != "1" {
		t.Skipf("opt-in: %s=1 boots each fetched kernel under qemu", optIn)
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(kernelvm.CacheDir(), "*", "vmlinuz"))
	if len(vmlinuz) == 0 {
		t.Skip("no kernels fetched (scripts/fetch-kernels)")
	}
	// The commands the guest's program runs, named in cfg.Tools, come
	// from this host's PATH. A missing one fails the run rather than
	// skipping it: whoever opted in asked for the guests, and a skip
	// would pass CI quietly over a package it forgot to install.
	tools := make([]string, len(cfg.Tools))
	for i, name := range cfg.Tools {
		path, err := exec.LookPath(name)
		if err != nil {
			t.Fatalf("the guests need the %s command from this host: %v", name, err)
		}
		tools[i] = path
	}
	cfg.Tools = tools
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Minute
	}
	cfg.Env = append(cfg.Env[:len(cfg.Env):len(cfg.Env)], InGuest+"=1")
	for _, vml := range vmlinuz {
		dir := filepath.Dir(vml)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			// Guests run -test.parallel at a time (GOMAXPROCS by
			// default): each takes a core under TCG.
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
			defer cancel()
			c := cfg
			c.Kernel, c.Modules = vml, filepath.Join(dir, "modules")
			res, err := kernelvm.Run(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			check(t, res)
		})
	}
}
