// Package cli holds the tuple command line: one file per command, each with
// an options struct, a constructor that binds its flags, and a run function
// that takes Streams so tests can drive it without a terminal.
//
// Exit codes are a contract: 0 success, 1 a network or runtime failure,
// 2 bad input (flags, arguments, files). Commands return errors made with
// usageError or plain errors; Main maps them to codes.
package cli
