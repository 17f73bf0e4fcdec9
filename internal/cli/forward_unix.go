//go:build unix

package cli

import (
	"fmt"
	"os"
	"syscall"
)

// runTupled replaces this process with tupled.
func runTupled(_ Streams, path string, argv []string) error {
	err := syscall.Exec(path, argv, os.Environ())
	return fmt.Errorf("running %s: %w", path, err)
}
