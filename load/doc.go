// Package load opens and holds many TCP connections with a source-port
// policy (Run), or accepts and holds them as their sink (Sink).
//
// A process may hold only RLIMIT_NOFILE descriptors, so both spread their
// sockets over worker processes: the running binary re-executed through
// internal/reexec (the program's main calls reexec.Main first). A worker
// gets its job as a JSON argument, reports on stdout as JSON lines and
// ends when its hold time is over, when its stdin closes or on
// SIGINT/SIGTERM; a sink worker's listening socket is its descriptor 3.
// Every connection carries SO_LINGER 0 from its start, so whatever ends a
// run (the hold, an interrupt, SIGKILL) closes it with a reset and leaves
// no TIME_WAIT behind.
package load
