// Package netnstest gives tests a network namespace of their own. It is
// Linux only; see netnstest_linux.go.
package netnstest
