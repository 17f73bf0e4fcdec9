//go:build !linux

package kversion

// uname knows no Linux kernel elsewhere.
func uname() ([2]int, bool) { return [2]int{}, false }
