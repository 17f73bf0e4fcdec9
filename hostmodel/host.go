package hostmodel

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"

	"github.com/tuple-net/tuple/rules"
)

// ErrNotSupported is wrapped by errors from functions that need Linux.
var ErrNotSupported = errors.New("not supported")

func notSupported(what string) error {
	return fmt.Errorf("%s is %w on %s/%s", what, ErrNotSupported, runtime.GOOS, runtime.GOARCH)
}

// ReadHost returns the calling thread's network namespace as the rules
// model sees it: local addresses and port sysctls. procRoot is the procfs
// root ("/proc" when empty). The notes name sysctls the kernel lacks and
// the defaults used for them.
func ReadHost(procRoot string) (rules.Host, []string, error) {
	host := rules.DefaultHost()
	host.AllListeners = true // the live table lists every listener of the namespace
	local, err := LocalPrefixes()
	if err != nil {
		return host, nil, fmt.Errorf("local addresses: %w", err)
	}
	host.Local = local
	notes, err := Sysctls(procRoot, &host)
	if k, kerr := RunningKernel(); kerr == nil {
		host.Kernel = k
	} else {
		notes = append(notes, fmt.Sprintf("kernel version unknown (%v): the rules of %s apply", kerr, rules.Newest))
	}
	return host, notes, err
}

// IsLocal reports whether a is one of host's local addresses. Unspecified
// addresses count as local (a wildcard bind is always allowed), and a
// v4-mapped address is judged as its IPv4 form.
func IsLocal(host rules.Host, a netip.Addr) bool {
	a = a.Unmap()
	if a.IsUnspecified() {
		return true
	}
	for _, p := range host.Local {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
