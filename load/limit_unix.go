//go:build unix

package load

import (
	"os"

	"golang.org/x/sys/unix"
)

// fileLimit is RLIMIT_NOFILE's soft limit, the most descriptors this
// process may hold.
func fileLimit() (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, os.NewSyscallError("getrlimit RLIMIT_NOFILE", err)
	}
	return uint64(lim.Cur), nil
}
