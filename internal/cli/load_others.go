//go:build !linux

package cli

import "os"

// isTerminal reports false off Linux: the progress line is a convenience.
func isTerminal(*os.File) bool { return false }
