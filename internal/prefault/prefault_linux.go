package prefault

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Slice asks the kernel to back the whole capacity of s with memory now
// (MADV_POPULATE_WRITE, Linux 5.14; huge pages where transparent huge
// pages are on for asking). A kernel without it refuses the advice and the
// pages fault in as before. Small slices are left alone.
func Slice[T any](s []T) {
	var zero T
	n := uintptr(cap(s)) * unsafe.Sizeof(zero)
	if n < 256<<10 {
		return
	}
	p := unsafe.Pointer(unsafe.SliceData(s))
	start := uintptr(p)
	page := uintptr(unix.Getpagesize())
	// Whole pages inside the array only: a partial page at either end may
	// hold other objects.
	lo := (start + page - 1) &^ (page - 1)
	hi := (start + n) &^ (page - 1)
	if hi <= lo {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Add(p, lo-start)), hi-lo)
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	_ = unix.Madvise(b, unix.MADV_POPULATE_WRITE)
}
