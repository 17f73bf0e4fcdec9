package cli

import "golang.org/x/sys/unix"

// hostRelease is the running kernel's uname -r.
func hostRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}
