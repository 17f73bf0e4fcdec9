// Package lazyre holds package-level regular expressions that compile at
// their first use, not at program start: every tuple command pays every
// linked package's initialisation, and most commands match none of a given
// package's expressions (a counted repetition alone can compile to a
// program of a thousand allocations).
package lazyre

import (
	"regexp"
	"sync"
)

// New returns a function that compiles expr at its first call and returns
// the same *regexp.Regexp ever after. An invalid expr panics at that first
// call, as regexp.MustCompile does at start-up: each one's tests call it.
func New(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
