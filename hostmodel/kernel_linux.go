package hostmodel

import (
	"fmt"

	"golang.org/x/sys/unix"

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
