//go:build !unix

package load

import "github.com/tuple-net/tuple/inet"

// fileLimit: there is no RLIMIT_NOFILE here; give Spec.PerProc.
func fileLimit() (uint64, error) {
	return 0, inet.Unsupported("reading RLIMIT_NOFILE")
}
