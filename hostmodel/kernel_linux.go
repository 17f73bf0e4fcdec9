package hostmodel

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/netns"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/sockopt"
)

// RunningKernel is the running kernel as the rules model's input: its
// version from uname (the stable patch level from uname -v on Debian and
// Ubuntu kernels, whose uname -r keeps the ABI name) and the features
// probed where the version may not tell (IP_LOCAL_PORT_RANGE, which
// distributions backport).
func RunningKernel() (rules.Kernel, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return rules.Kernel{}, fmt.Errorf("uname: %w", err)
	}
	k, err := rules.KernelFromUname(unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:]))
	if err != nil {
		return k, err
	}
	known, err := sockopt.Known(sockopt.LocalPortRange)
	if err != nil {
		return k, fmt.Errorf("probing IP_LOCAL_PORT_RANGE: %w", err)
	}
	k.PortRangeOpt = rules.Absent
	if known {
		k.PortRangeOpt = rules.Present
	}
	return k, nil
}

// ProbeUDPWildcardFix tells whether the running kernel has the fix of
// CVE-2026-31503 (a wildcard UDP bind checks its port's whole slot even
// past ten sockets), which stable series took in some point releases and
// not in older ones, so that the version cannot tell. In a network
// namespace of its own (netns.Fresh) it binds eleven UDP sockets to one
// port on addresses of their own (IP_FREEBIND: nothing is up there) and
// then the wildcard: refused with the fix, let through without. Without
// the fix a refusal can still happen: the wildcard's secondary chain
// shares its bucket with an address's (the bucket hashes the address with
// a secret of the namespace, so about one try in 46 on a guest's
// 512-slot table). So it tries four sets of addresses and calls the fix
// present only when all four are refused. Unprobed where it cannot make a
// namespace (without CAP_SYS_ADMIN). The answer is the process's: it is
// probed once.
func ProbeUDPWildcardFix() rules.Presence { return udpWildcardFix() }

var udpWildcardFix = sync.OnceValue(func() rules.Presence {
	p := rules.Unprobed
	if err := netns.Fresh(func() error { p = probeUDPWildcardFix(); return nil }); err != nil {
		return rules.Unprobed
	}
	return p
})

func probeUDPWildcardFix() rules.Presence {
	for try := range 4 {
		if p := probeUDPWildcardOnce(byte(try)); p != rules.Present {
			return p
		}
	}
	return rules.Present
}

// probeUDPWildcardOnce is one try of probeUDPWildcardFix, on port 5000+try
// and addresses 10.255.try.1 to 10.255.try.11.
func probeUDPWildcardOnce(try byte) rules.Presence {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	port := 5000 + int(try)
	bind := func(addr [4]byte, freebind bool) error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fds = append(fds, fd)
		if freebind {
			if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_FREEBIND, 1); err != nil {
				return err
			}
		}
		return unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: addr})
	}
	for i := range 11 {
		if bind([4]byte{10, 255, try, byte(i + 1)}, true) != nil {
			return rules.Unprobed
		}
	}
	switch err := bind([4]byte{}, false); {
	case err == nil:
		return rules.Absent
	case errors.Is(err, unix.EADDRINUSE):
		return rules.Present
	}
	return rules.Unprobed
}
