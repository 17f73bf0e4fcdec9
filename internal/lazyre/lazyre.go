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
// call, not at start-up: the tests of the code that matches it find it.
func New(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
