// Package kversion tells the running kernel's version, for the packages
// below the rules model (socktab, sockfacts) that pick how to read the
// kernel by it. The rules model has its own, fuller Kernel type.
package kversion

import (
	"strconv"
	"strings"
	"sync"
)

// running is the kernel's major and minor version, ok false when unknown.
var running = sync.OnceValues(func() ([2]int, bool) { return uname() })

// AtLeast reports whether the running kernel is major.minor or later; an
// unknown version counts as later (the newest behaviour).
func AtLeast(major, minor int) bool {
	v, ok := running()
	if !ok {
		return true
	}
	return v[0] > major || v[0] == major && v[1] >= minor
}

// parseRelease reads major.minor from a kernel release ("6.1.0-57-cloud-amd64",
// "5.10.0", "6.18"); ok is false when it does not start that way.
func parseRelease(release string) (v [2]int, ok bool) {
	major, rest, found := strings.Cut(release, ".")
	if !found {
		return v, false
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	a, err1 := strconv.Atoi(major)
	b, err2 := strconv.Atoi(rest[:end])
	if err1 != nil || err2 != nil || a < 0 || b < 0 {
		return v, false
	}
	return [2]int{a, b}, true
}
