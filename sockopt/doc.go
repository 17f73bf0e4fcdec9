// Package sockopt sets and reads the socket options that decide whether two
// sockets may share a local port.
//
// Options are data: each platform has a table mapping an option to its
// (level, name), and one generic path applies them. Options.Control plugs into
// net.Dialer.Control and net.ListenConfig.Control, so they are set after
// socket() and before bind(), which is the only moment most of them matter.
//
// An option the platform lacks is an error wrapping inet.ErrUnsupported, never
// silently ignored: a user who asked for SO_REUSEPORT and did not get it would
// otherwise be debugging a port conflict that the tool itself caused.
//
// Options values are plain data and safe to share between goroutines.
package sockopt
