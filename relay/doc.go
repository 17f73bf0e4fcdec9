// Package relay is tuple's netcat data pump: it copies bytes both ways
// between a local reader/writer pair (usually stdin/stdout) and a network
// connection, binary-safe and half-close aware.
//
// # Session semantics
//
// Two directions run at once:
//
//   - input -> conn: when input reaches EOF, the write side of conn is shut
//     down (CloseWrite, a TCP FIN) so the peer sees EOF while its replies
//     still arrive. Options.NoShutdown leaves the socket alone instead.
//   - conn -> output: everything the peer sends is written to output.
//
// The session ends when both directions are done: input reached EOF (and
// the socket was shut down) and the peer closed its side. It also ends when
// the peer closed its side and input then stays silent for Options.Linger
// (one second by default), so an interactive session ends soon after the
// peer hung up, like ncat's, while input that keeps coming (a file, a pipe)
// is still sent in full; LingerUntilEOF waits for input's end however long
// it pauses (nc's client rule, which never drops input). Any read or write
// error, and cancelling the context, end it at once. Ending the input alone
// ends the session only with Options.Quit (nc -q): otherwise it keeps
// reading until the peer closes. For a connection without EOF (UDP),
// Options.IdleAfterInput ends the session once input has ended and nothing
// arrived for that long; DatagramBufferSize and MaxDatagramInput keep every
// datagram whole.
//
// Run closes conn before it returns and returns only after both copying
// goroutines are gone, with one documented exception: a Read on input that
// cannot be interrupted (input has no SetReadDeadline, like a terminal on
// os.Stdin) keeps its goroutine until that Read returns; whatever it then
// reads is dropped. Inputs with deadlines (net.Conn, pollable pipes) are
// always interrupted.
//
// Run is safe to call from many goroutines on different connections.
package relay
