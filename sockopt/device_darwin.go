package sockopt

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// macOS binds to an interface by index, so the name is resolved first.
func setDevice(fd uintptr, level, name int, dev string) error {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(int(fd), level, name, ifi.Index))
}

func getDevice(fd uintptr, level, name int) (string, error) {
	idx, err := unix.GetsockoptInt(int(fd), level, name)
	if err != nil || idx == 0 {
		return "", os.NewSyscallError("getsockopt", err)
	}
	ifi, err := net.InterfaceByIndex(idx)
	if err != nil {
		return "", err
	}
	return ifi.Name, nil
}
