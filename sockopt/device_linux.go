package sockopt

import (
	"os"

	"golang.org/x/sys/unix"
)

func setDevice(fd uintptr, level, name int, dev string) error {
	return os.NewSyscallError("setsockopt", unix.SetsockoptString(int(fd), level, name, dev))
}

func getDevice(fd uintptr, level, name int) (string, error) {
	s, err := unix.GetsockoptString(int(fd), level, name)
	return s, os.NewSyscallError("getsockopt", err)
}
