//go:build !unix

package rules

import "syscall"

// platformErrnoName: no errno list off Unix; the table above names the
// port rules' own.
func platformErrnoName(syscall.Errno) string { return "" }

// platformErrno: no errno list off Unix.
func platformErrno(string) syscall.Errno { return 0 }
