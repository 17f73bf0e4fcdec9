// Package nattest builds, for tests, three network namespaces joined as a
// source-NAT path: inside clients, a router whose NAT rules the test
// installs, and a server with two destination addresses. Tests open
// connections through it and see the source the server got. It is Linux
// only; see nattest_linux.go.
package nattest
