// Package prefault backs a large new slice with memory in one system call
// instead of one page fault per page as it is first written: on virtual
// machines a fault costs more than filling the page, and a command that
// reads a table of 100,000 sockets once writes thousands of fresh pages.
package prefault

// Make is make([]T, n, capacity) with the array backed at once (Slice).
func Make[T any](n, capacity int) []T {
	s := make([]T, n, capacity)
	Slice(s)
	return s
}

// Grow is slices.Grow with a new array, when one is needed, backed at
// once (Slice): room for n more, and at least twice the old capacity, so
// that growing one element at a time copies the slice a few times only.
func Grow[T any](s []T, n int) []T {
	if cap(s)-len(s) >= n {
		return s
	}
	g := Make[T](len(s), len(s)+max(n, cap(s)))
	copy(g, s)
	return g
}
