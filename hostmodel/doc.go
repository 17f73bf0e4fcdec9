// Package hostmodel turns the live host into the inputs of the rules model
// and turns the model's verdicts back into explanations a person can act on.
//
// It reads three things: the namespace's port sysctls from /proc/sys (the
// procfs root is injectable, so tests point it at fixtures), the addresses
// the kernel treats as local (RTN_LOCAL routes, read over rtnetlink), and
// the socket table (socktab) converted socket by socket into rules.Socket.
// Facts the socket table cannot show (an owner's reuse flags when its
// descriptor is out of reach, whether a port came from bind() or connect())
// are marked unknown with a stated assumption; nothing is guessed silently.
//
// Explain takes a rules.Outcome and produces the report `tuple why` prints:
// each blocker with its four-tuple, state, options and owning processes, the
// reason in plain words, and fixes. Fixes are computed, not canned: each
// candidate change is run through rules.Predict again and only the ones the
// model says succeed are offered.
//
// Reading the host needs no privileges; owners' options and processes need
// root (pidfd_getfd and /proc/PID/fd) and are reported unknown otherwise.
// The functions are safe for concurrent use; the namespace read is the one
// of the calling OS thread.
package hostmodel
