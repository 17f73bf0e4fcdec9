package kversion

import "golang.org/x/sys/unix"

// uname reads the release uname(2) reports.
func uname() ([2]int, bool) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return [2]int{}, false
	}
	return parseRelease(unix.ByteSliceToString(u.Release[:]))
}
