//go:build linux && amd64

package kernelvm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Guest makes the calling program the init of a kernelvm guest when it is
// one (PID 1 with the run's description in its initramfs): it prepares the
// system, runs the program again as a child with the requested arguments
// and powers the guest off, never returning. Anywhere else it returns at
// once, so programs call it first thing in main or TestMain.
func Guest() {
	if os.Getpid() != 1 {
		return
	}
	data, err := os.ReadFile("/" + guestSpec)
	if err != nil {
		return
	}
	code := guestRun(data)
	if st, err := os.OpenFile("/dev/ttyS2", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		var u unix.Utsname
		_ = unix.Uname(&u)
		// The host reads the status from this port; a failed write shows
		// there as a missing status, and the guest can only power off.
		_, _ = fmt.Fprintf(st, "kernelvm: release %s\n%s%d\n", unix.ByteSliceToString(u.Release[:]), statusPrefix, code)
		_ = unix.IoctlSetInt(int(st.Fd()), unix.TCSBRK, 1) // tcdrain
		st.Close()
	}
	unix.Sync()
	// -no-reboot turns the restart into qemu's exit.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

// guestNoFile is the guest program's RLIMIT_NOFILE, the CI machines' own.
const guestNoFile = 20000

// guestRun prepares the guest and runs the program; it returns its exit
// status (125 when the guest could not run it).
func guestRun(data []byte) int {
	var sp spec
	if err := json.Unmarshal(data, &sp); err != nil {
		fmt.Fprintf(os.Stderr, "kernelvm: %s: %v\n", guestSpec, err)
		return 125
	}
	mounts := []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"}, {"tmpfs", "/run", "tmpfs"},
	}
	for _, m := range mounts {
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			fmt.Fprintf(os.Stderr, "kernelvm: mount %s: %v\n", m.dst, err)
			return 125
		}
	}
	for _, m := range sp.Modules {
		if err := loadModule(filepath.Join("/", guestModules, m)); err != nil {
			fmt.Fprintf(os.Stderr, "kernelvm: module %s: %v\n", m, err)
			return 125
		}
	}
	out, err := os.OpenFile("/dev/ttyS1", os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kernelvm: stdout port: %v\n", err)
		return 125
	}
	defer out.Close()
	// Raw output: no \n -> \r\n translation on the way to the host.
	if t, err := unix.IoctlGetTermios(int(out.Fd()), unix.TCGETS); err == nil {
		t.Oflag &^= unix.OPOST
		_ = unix.IoctlSetTermios(int(out.Fd()), unix.TCSETS, t)
	}
	// The kernel starts init with 1024 descriptors (4096 at most); the
	// hosts tests run on allow thousands more, and a test holding several
	// thousand sockets would fail here for want of them alone.
	// syscall.Setrlimit, unlike a raw call, is also what the child gets.
	if err := syscall.Setrlimit(unix.RLIMIT_NOFILE, &syscall.Rlimit{Cur: guestNoFile, Max: guestNoFile}); err != nil {
		fmt.Fprintf(os.Stderr, "kernelvm: raise RLIMIT_NOFILE to %d: %v\n", guestNoFile, err)
	}
	cmd := exec.Command("/init", sp.Args...)
	cmd.Env = append([]string{"PATH=/" + guestBin + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TMPDIR=/tmp"}, sp.Env...)
	cmd.Stdout, cmd.Stderr, cmd.Dir = out, os.Stderr, "/root"
	err = cmd.Run()
	// Wait until the port has sent everything (tcdrain): a close would
	// give up after the tty's closing_wait (30 s) and drop the rest, and a
	// slow emulated UART under a loaded host can need longer.
	_ = unix.IoctlSetInt(int(out.Fd()), unix.TCSBRK, 1)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if c := ee.ExitCode(); c >= 0 {
			return c
		}
		fmt.Fprintf(os.Stderr, "kernelvm: %v\n", err)
		return 124
	default:
		fmt.Fprintf(os.Stderr, "kernelvm: %v\n", err)
		return 125
	}
}

// loadModule loads one module file; one already loaded (or built in) is fine.
func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}
