// Package benchtools holds small programs the benchmark scripts run; they
// are not part of tuple. See holder for the connection holder used by
// scripts/bench-ls, and dumpfloor for the floor under tuple ls -ta in
// scripts/bench-scale.
package benchtools
