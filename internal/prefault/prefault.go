// Package prefault backs a large new slice with memory in one system call
// instead of one page fault per page as it is first written: on virtual
// machines a fault costs more than filling the page, and a command that
// reads a table of 100,000 sockets once writes thousands of fresh pages.
package prefault
