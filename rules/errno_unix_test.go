//go:build unix

package rules

import (
	"syscall"
	"testing"
)

// Every errno a failure can carry is named, not only the port rules' own:
// "write: broken pipe (errno 32)" tells a person nothing to look up.
func TestErrnoNamesEveryErrno(t *testing.T) {
	for e, want := range map[syscall.Errno]string{
		0:                    "ok",
		syscall.EADDRINUSE:   "EADDRINUSE",
		syscall.EPIPE:        "EPIPE",
		syscall.ENOTCONN:     "ENOTCONN",
		syscall.EMFILE:       "EMFILE",
		syscall.ENOENT:       "ENOENT",
		syscall.Errno(10000): "errno 10000",
	} {
		if got := ErrnoName(e); got != want {
			t.Errorf("ErrnoName(%d) = %q, want %q", int(e), got, want)
		}
	}
	for _, n := range []string{"EADDRINUSE", "EMFILE", "ENOTCONN", "EPIPE"} {
		e, ok := ParseErrno(n)
		if !ok || ErrnoName(e) != n {
			t.Errorf("ParseErrno(%q) = %d, %v; want the errno named so", n, int(e), ok)
		}
	}
	for _, n := range []string{"EADDRINUS", "errno 32", "", "ok2"} {
		if e, ok := ParseErrno(n); ok {
			t.Errorf("ParseErrno(%q) = %d, true; want no errno", n, int(e))
		}
	}
}
