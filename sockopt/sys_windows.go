package sockopt

import (
	"os"

	"golang.org/x/sys/windows"
)

func setInt(fd uintptr, level, name, v int) error {
	return os.NewSyscallError("setsockopt", windows.SetsockoptInt(windows.Handle(fd), level, name, v))
}

func getInt(fd uintptr, level, name int) (int, error) {
	v, err := windows.GetsockoptInt(windows.Handle(fd), level, name)
	return v, os.NewSyscallError("getsockopt", err)
}

func setDevice(fd uintptr, level, name int, dev string) error { return notSupported(BindToDevice) }

func getDevice(fd uintptr, level, name int) (string, error) { return "", notSupported(BindToDevice) }
