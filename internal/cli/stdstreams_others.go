//go:build !unix

package cli

import "os"

// offStdFD: only Unix has SIGPIPE.
func offStdFD(f *os.File) *os.File { return f }
