//go:build unix

package sockopt

import (
	"os"

	"golang.org/x/sys/unix"
)

func setInt(fd uintptr, level, name, v int) error {
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(int(fd), level, name, v))
}

func getInt(fd uintptr, level, name int) (int, error) {
	v, err := unix.GetsockoptInt(int(fd), level, name)
	return v, os.NewSyscallError("getsockopt", err)
}
