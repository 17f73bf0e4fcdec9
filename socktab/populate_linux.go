package socktab

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// populate asks the kernel to back the array of socks (its whole capacity)
// with memory now, in one call (MADV_POPULATE_WRITE, Linux 5.14), instead
// of one page fault per 4 KiB as the dump first writes each page: a table of
// 40,000 sockets is about 3,300 pages, and on virtual machines each fault
// costs more than filling the page. A kernel without it refuses the advice;
// the pages then fault in as before.
func populate[T element](socks []T) {
	var zero T
	n := uintptr(cap(socks)) * unsafe.Sizeof(zero)
	if n < 64<<10 {
		return // small tables: not worth two system calls
	}
	p := unsafe.Pointer(unsafe.SliceData(socks))
	start := uintptr(p)
	page := uintptr(unix.Getpagesize())
	// Only whole pages inside the array: the advice covers pages, and a
	// partial page at either end may hold other objects (faulting them in
	// is harmless, but keep to our own memory).
	lo := (start + page - 1) &^ (page - 1)
	hi := (start + n) &^ (page - 1)
	if hi <= lo {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Add(p, lo-start)), hi-lo)
	// Huge pages where the kernel has them for asking (transparent huge
	// pages in "madvise" mode): one fault per 2 MiB instead of 512.
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	_ = unix.Madvise(b, unix.MADV_POPULATE_WRITE)
}
