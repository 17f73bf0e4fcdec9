//go:build linux && amd64

package kernelvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// statusPrefix starts the line the guest's init writes on its status port.
const statusPrefix = "kernelvm: exit "

// Run boots cfg.Kernel under qemu with an initramfs holding cfg.Exe and
// returns what the program did. An error means the guest did not run the
// program to its end (qemu missing, a bad kernel, a timeout); the
// program's own failure is Result.ExitCode.
func Run(ctx context.Context, cfg Config) (_ Result, err error) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return Result{}, errors.New("kernelvm: qemu-system-x86_64 not found (Debian package qemu-system-x86)")
	}
	if cfg.Exe == "" {
		if cfg.Exe, err = os.Executable(); err != nil {
			return Result{}, err
		}
	}
	if _, err := os.Stat(cfg.Kernel); err != nil {
		return Result{}, fmt.Errorf("kernelvm: kernel: %w", err)
	}
	dir, err := os.MkdirTemp("", "tuple-kernelvm-")
	if err != nil {
		return Result{}, err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = fmt.Errorf("kernelvm: remove the run's files: %w", rerr)
		}
	}()
	img, err := initramfsBytes(cfg)
	if err != nil {
		return Result{}, err
	}
	initrd := filepath.Join(dir, "initrd")
	if err := os.WriteFile(initrd, img, 0o600); err != nil {
		return Result{}, err
	}
	accels := []string{cfg.Accel}
	if cfg.Accel == "" {
		accels = []string{"tcg"}
		if kvmWorks() {
			accels = []string{"kvm", "tcg"}
		}
	}
	var res Result
	for i, accel := range accels {
		res, err = boot(ctx, qemu, dir, initrd, accel, cfg)
		// A KVM guest that never reported (nested KVM that does not
		// boot) gets one more try under TCG.
		if err == nil || i == len(accels)-1 || ctx.Err() != nil || !errors.Is(err, errNoGuest) {
			break
		}
	}
	return res, err
}

// boot runs qemu once.
func boot(ctx context.Context, qemu, dir, initrd, accel string, cfg Config) (Result, error) {
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	mem := cfg.MemMiB
	if mem == 0 {
		mem = 768
	}
	console, out, status := filepath.Join(dir, "console"), filepath.Join(dir, "stdout"), filepath.Join(dir, "status")
	cpu := "max"
	if accel == "kvm" {
		cpu = "host"
	}
	args := []string{
		"-accel", accel, "-cpu", cpu, "-m", strconv.Itoa(mem), "-smp", "1",
		"-kernel", cfg.Kernel, "-initrd", initrd,
		// quiet console; panic=-1 and -no-reboot turn a panic or the
		// init's restart into qemu's exit; random.trust_cpu lets the
		// crng start at once from RDRAND (5.10 would wait for entropy);
		// no_timer_check skips the IO-APIC timer test, which a TCG guest
		// on a loaded host fails ("IO-APIC + timer doesn't work!" panic).
		// uhash_entries gives the UDP hash the size a server's has
		// (16,384 slots at 24 GiB; the guest's memory would give 512):
		// in a small table an address's secondary chain often shares the
		// wildcard's bucket, which flips crowded-port answers by chance.
		"-append", "console=ttyS0 quiet loglevel=3 panic=-1 random.trust_cpu=on no_timer_check uhash_entries=16384 rdinit=/init",
		"-no-reboot", "-display", "none", "-monitor", "none", "-nic", "none",
		// ttyS0 console, ttyS1 the program's stdout, ttyS2 the status.
		"-serial", "file:" + console, "-serial", "file:" + out, "-serial", "file:" + status,
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	var qerr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &qerr, &qerr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	res := Result{Accel: accel, Duration: time.Since(start), ExitCode: -1}
	res.Console, _ = os.ReadFile(console)
	res.Stdout, _ = os.ReadFile(out)
	st, _ := os.ReadFile(status)
	code, release, ok := parseStatus(st)
	res.Release = release
	if ctx.Err() != nil {
		return res, fmt.Errorf("kernelvm: %s: no end within %v (%s)%s", filepath.Base(cfg.Kernel), timeout, accel, tail(res.Console))
	}
	if runErr != nil && !ok {
		return res, fmt.Errorf("kernelvm: qemu (%s): %v: %s%s", accel, runErr, strings.TrimSpace(qerr.String()), tail(res.Console))
	}
	if !ok {
		return res, fmt.Errorf("kernelvm: %s (%s): %w%s", filepath.Base(cfg.Kernel), accel, errNoGuest, tail(res.Console))
	}
	res.ExitCode = code
	return res, nil
}

// parseStatus reads the status port: "kernelvm: release R" then
// "kernelvm: exit N".
func parseStatus(b []byte) (code int, release string, ok bool) {
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if r, found := strings.CutPrefix(l, "kernelvm: release "); found {
			release = r
		}
		if c, found := strings.CutPrefix(l, statusPrefix); found {
			n, err := strconv.Atoi(c)
			if err == nil {
				code, ok = n, true
			}
		}
	}
	return code, release, ok
}

// tail is the end of a console log, for an error message.
func tail(console []byte) string {
	lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(string(console), "\r", "")), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return "; the console is empty"
	}
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "; the console ends:\n  " + strings.Join(lines, "\n  ")
}

// kvmWorks reports whether /dev/kvm opens and speaks the stable API.
func kvmWorks() bool {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	const kvmGetAPIVersion = 0xAE00
	v, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmGetAPIVersion, 0)
	return errno == 0 && v == 12
}
