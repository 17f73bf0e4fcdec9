package hostmodel

import (
	"fmt"
	"net/netip"

	"github.com/tuple-net/tuple/rules"
)

// ReadHost returns the calling thread's network namespace as the rules
// model sees it: local addresses and port sysctls. procRoot is the procfs
// root ("/proc" when empty). The notes name sysctls the kernel lacks and
// the defaults used for them.
func ReadHost(procRoot string) (rules.Host, []string, error) {
	host := rules.DefaultHost()
	host.AllListeners = true // the live table lists every listener of the namespace
	local, scoped, err := localAddrs()
	if err != nil {
		return host, nil, fmt.Errorf("local addresses: %w", err)
	}
	host.Local, host.Scoped = local, scoped
	notes, err := Sysctls(procRoot, &host)
	if k, kerr := RunningKernel(); kerr == nil {
		host.Kernel = k
	} else {
		notes = append(notes, fmt.Sprintf("kernel version unknown (%v): the rules of %s apply", kerr, rules.Newest))
	}
	return host, notes, err
}

// IsLocal reports whether a is an address of the calling thread's network
// namespace (its local routes), as ReadHost's Host.IsLocal says, without
// reading the port sysctls.
func IsLocal(a netip.Addr) (bool, error) {
	local, _, err := localAddrs()
	if err != nil {
		return false, fmt.Errorf("local addresses: %w", err)
	}
	return rules.Host{Local: local}.IsLocal(a), nil
}
