package rules

import (
	"strconv"
	"syscall"
)

// The errnos the port rules produce, by their C names. syscall defines these
// constants on every platform, so the model builds everywhere.
var errnoNames = map[syscall.Errno]string{
	syscall.EADDRINUSE:      "EADDRINUSE",
	syscall.EADDRNOTAVAIL:   "EADDRNOTAVAIL",
	syscall.EINVAL:          "EINVAL",
	syscall.EACCES:          "EACCES",
	syscall.EAGAIN:          "EAGAIN",
	syscall.ECONNREFUSED:    "ECONNREFUSED",
	syscall.EISCONN:         "EISCONN",
	syscall.EPERM:           "EPERM",
	syscall.ENODEV:          "ENODEV",
	syscall.EAFNOSUPPORT:    "EAFNOSUPPORT",
	syscall.EPROTONOSUPPORT: "EPROTONOSUPPORT",
	syscall.ENETUNREACH:     "ENETUNREACH",
	syscall.ETIMEDOUT:       "ETIMEDOUT",
	syscall.ECONNRESET:      "ECONNRESET",
	syscall.EOPNOTSUPP:      "EOPNOTSUPP",
	syscall.EBADF:           "EBADF",
	syscall.EALREADY:        "EALREADY",
	syscall.EINPROGRESS:     "EINPROGRESS",
}

// ErrnoName returns e's C name, "ok" for 0, or "errno N" where the
// platform names none: the port rules' own errnos from the table above,
// any other (EPIPE, EMFILE, ENOTCONN) from the platform's list, so a
// failure is always named in words a person can look up.
func ErrnoName(e syscall.Errno) string {
	if e == 0 {
		return "ok"
	}
	if n, ok := errnoNames[e]; ok {
		return n
	}
	if n := platformErrnoName(e); n != "" {
		return n
	}
	return "errno " + strconv.Itoa(int(e))
}

// ParseErrno returns the errno named n ("EADDRINUSE"), or 0 and true for
// "ok". It is false for names it does not know.
func ParseErrno(n string) (syscall.Errno, bool) {
	if n == "ok" {
		return 0, true
	}
	for e, name := range errnoNames {
		if name == n {
			return e, true
		}
	}
	if e := platformErrno(n); e != 0 {
		return e, true
	}
	return 0, false
}
