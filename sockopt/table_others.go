//go:build !linux && !darwin && !freebsd && !windows

package sockopt

// Platforms without a table support no option; every request is an error
// wrapping inet.ErrUnsupported that names GOOS/GOARCH.
var table = map[ID]spec{}
