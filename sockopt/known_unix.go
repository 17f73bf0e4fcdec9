//go:build unix

package sockopt

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Known reports whether the running kernel knows option id, by asking a
// fresh TCP socket for it: only ENOPROTOOPT means unknown. A kernel can know
// an option its version predates (a distribution backport) or lack one
// this platform's table lists (IP_LOCAL_PORT_RANGE before Linux 6.3).
func Known(id ID) (bool, error) {
	sp, ok := table[id]
	if !ok {
		return false, nil
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	unix.CloseOnExec(fd)
	level, name := sp.levelName(false)
	if sp.kind == kindDevice {
		_, err = getDevice(uintptr(fd), level, name)
	} else {
		_, err = getInt(uintptr(fd), level, name)
	}
	if errors.Is(err, unix.ENOPROTOOPT) {
		return false, nil
	}
	return true, nil
}
