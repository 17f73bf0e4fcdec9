// Package rules is a pure model of the Linux kernel's port rules for TCP and
// UDP: given the sockets that exist, the host's settings and a new socket
// with an operation (bind, listen, connect), it predicts the outcome (ok or
// the errno) and names every existing socket that causes it.
//
// It makes no system calls, so it runs anywhere and is deterministic: the
// same World, Socket and Op always give the same Outcome. The kernel is the
// judge; the model is checked against it in network namespaces by
// kernel_linux_test.go, which builds thousands of random situations for
// real and compares every errno. docs/kernel-rules.md lists the
// rules as the model implements them, each with the kernel function it
// follows and the file here that models it.
//
// For one prediction use Predict; for many over one table (the ports
// package counts connect() candidates per destination over tens of
// thousands of sockets) build a Model once with NewModel. A Model is
// read-only and safe for concurrent use.
//
// Facts the caller could not observe (an owner's reuse flags, whether a
// port came from bind() or connect()) are marked in Socket.Unknown; the
// model then uses the value given and lists the assumption in the Outcome,
// so a verdict never rests on a silent guess.
package rules
