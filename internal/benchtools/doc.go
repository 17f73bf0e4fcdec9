// Package benchtools holds small programs the benchmark scripts run; they
// are not part of tuple. See holder for the connection holder used by
// scripts/bench-ls.
package benchtools
