package rules

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"github.com/tuple-net/tuple/internal/lazyre"
)

// Kernel names the kernel whose port rules the model applies: the rules
// changed between 5.10 and 6.18, and an answer true on one is false on
// another. The zero value is the newest kernel the model follows (6.18), so
// callers that know nothing about their kernel get today's rules.
//
// Each behaviour that depends on it says in a comment which kernel change
// (commit or release) introduced it; docs/kernels.md, generated from lab
// runs on Debian's 5.10, 6.1 and 6.12 kernels, shows the differences.
type Kernel struct {
	Major, Minor, Patch int
	// PortRangeOpt says whether the kernel knows IP_LOCAL_PORT_RANGE where
	// the version alone may not settle it (a distribution kernel with
	// backports): probed on the running kernel, Unprobed otherwise.
	PortRangeOpt Presence
	// UDPWildcardFix says whether the kernel has the fix of CVE-2026-31503
	// (udpWildcardScansSlot), which stable series took in some point
	// releases and not in older ones: probed on the running kernel
	// (hostmodel.ProbeUDPWildcardFix), Unprobed otherwise.
	UDPWildcardFix Presence
}

// Presence is a probed kernel feature.
type Presence int8

const (
	Unprobed Presence = iota // decided by the version
	Present
	Absent
)

// or is the probe's answer where there was one, byVersion where not.
func (p Presence) or(byVersion bool) bool {
	switch p {
	case Present:
		return true
	case Absent:
		return false
	}
	return byVersion
}

// Newest is the kernel the model was written for and verified on.
var Newest = Kernel{Major: 6, Minor: 18}

// Oldest is the oldest kernel the model follows: 5.10, the oldest series
// it is checked against (in a guest, beside 6.1 and 6.12). Older kernels
// differ in rules it does not have.
var Oldest = Kernel{Major: 5, Minor: 10}

// IsZero reports whether k is the zero Kernel (the newest rules).
func (k Kernel) IsZero() bool { return k.Major == 0 && k.Minor == 0 && k.Patch == 0 }

// AtLeast reports whether k is major.minor.patch or later. The zero Kernel
// is later than any.
func (k Kernel) AtLeast(major, minor, patch int) bool {
	if k.IsZero() {
		return true
	}
	if k.Major != major {
		return k.Major > major
	}
	if k.Minor != minor {
		return k.Minor > minor
	}
	return k.Patch >= patch
}

// Series reports whether k is of the major.minor stable series.
func (k Kernel) Series(major, minor int) bool { return k.Major == major && k.Minor == minor }

func (k Kernel) String() string {
	if k.IsZero() {
		return Newest.String()
	}
	if k.Patch == 0 {
		return fmt.Sprintf("%d.%d", k.Major, k.Minor)
	}
	return fmt.Sprintf("%d.%d.%d", k.Major, k.Minor, k.Patch)
}

// versionRE matches a release's leading major.minor[.patch], then its end
// or what a release may go on with: a suffix ("-91-generic", "+deb13") or a
// fourth number (WSL's "6.6.87.2"), not a stray dot or letter ("6.1.x").
var versionRE = lazyre.New(`^(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)?(?:$|[-+_~])`)

// ParseKernel reads a kernel version: "6.1", "6.1.192", or a release as
// uname -r prints it ("6.12.118+deb13-cloud-amd64", "5.15.0-91-generic").
func ParseKernel(s string) (Kernel, error) {
	m := versionRE().FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Kernel{}, fmt.Errorf("kernel version %q: want MAJOR.MINOR[.PATCH], e.g. 6.1 or 5.10.262", s)
	}
	var k Kernel
	var err error
	if k.Major, err = strconv.Atoi(m[1]); err != nil || k.Major < 2 || k.Major > 99 {
		return Kernel{}, fmt.Errorf("kernel version %q: major %q out of range", s, m[1])
	}
	if k.Minor, err = strconv.Atoi(m[2]); err != nil || k.Minor > 999 {
		return Kernel{}, fmt.Errorf("kernel version %q: minor %q out of range", s, m[2])
	}
	if m[3] != "" {
		if k.Patch, err = strconv.Atoi(m[3]); err != nil || k.Patch > 99999 {
			return Kernel{}, fmt.Errorf("kernel version %q: patch %q out of range", s, m[3])
		}
	}
	return k, nil
}

// debianVersionRE finds the package version Debian's kernels put in uname
// -v ("#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-...)"): their uname -r
// keeps the ABI name ("6.1.0-57-cloud-amd64"), whose patch level is 0.
var debianVersionRE = lazyre.New(`\b(?:Debian|Ubuntu) (\d+\.\d+\.\d+)`)

// KernelFromUname is the kernel uname(2) describes: the release (uname -r),
// with the stable patch level from the version (uname -v) where the
// distribution puts it there.
func KernelFromUname(release, version string) (Kernel, error) {
	k, err := ParseKernel(release)
	if err != nil {
		return k, err
	}
	if m := debianVersionRE().FindStringSubmatch(version); m != nil {
		if d, err := ParseKernel(m[1]); err == nil && d.Major == k.Major && d.Minor == k.Minor {
			k.Patch = d.Patch
		}
	}
	return k, nil
}

// HasPortRangeOpt reports whether the kernel knows IP_LOCAL_PORT_RANGE:
// added in 6.3 (commit 91d0b78c5177, "inet: Add IP_LOCAL_PORT_RANGE socket
// option"); a probe of the running kernel overrides the version.
func (k Kernel) HasPortRangeOpt() bool {
	return k.PortRangeOpt.or(k.AtLeast(6, 3, 0))
}

// mappedMissesMappedWildcard: an AF_INET6 socket binding a specific
// v4-mapped address ([::ffff:127.0.0.1]) is not checked against AF_INET6
// owners of the v4-mapped wildcard ([::ffff:0.0.0.0]). The bhash2 table (6.1,
// commit 28044fc1d495) sends such a bind through inet_bhash2_addr_any_conflict,
// whose inet_bind2_bucket_match_addr_any matched only "::" between two
// AF_INET6 sockets; the 6.7 cycle fixed it ("tcp: Fix bind() regression for
// v4-mapped-v6 wildcard address"). Observed on Debian's 6.1.192 (the bind
// succeeds) and not on 5.10 or 6.12 (EADDRINUSE); an AF_INET 0.0.0.0 owner
// is still found on 6.1.
func (k Kernel) mappedMissesMappedWildcard() bool {
	return k.AtLeast(6, 1, 0) && !k.AtLeast(6, 7, 0)
}

// firstOwnerSetsFastreuse: the first socket to bind a TCP port sets the
// port's reuse cache from its own options (inet_csk_update_fastreuse's
// branch for an empty owners list: fastreuse 1 with SO_REUSEADDR,
// FASTREUSEPORT_ANY with SO_REUSEPORT). From 6.8 ("tcp: Link bhash2 to
// bhash.") the branch tests tb->bhash2, which the bind2 bucket joined
// before the update, so it is never taken. Read in the sources: Debian's
// 6.1.192 tests tb->owners, 6.12 tb->bhash2; the differential test found
// it on 5.10 and 6.1 (an accepted child of another uid let through).
func (k Kernel) firstOwnerSetsFastreuse() bool { return !k.AtLeast(6, 8, 0) }

// udpWildcardScansSlot: a UDP bind to a wildcard address checks the whole
// slot of its port even when the slot holds more than ten sockets
// (inet_use_hash2_on_bind in udp_lib_get_port): the fix of CVE-2026-31503,
// "udp: Fix wildcard bind conflict check when using hash2" (mainline 7.0,
// spring 2026), backported to stable series whose TCP has the helper it
// reuses (6.1 and later). Present in the sources of Debian's 6.1.192 and
// 6.12 and on 6.18.44; absent from
// 5.10.262, which binds past eleven sockets on specific addresses (lab
// udp-wildcard-on-a-crowded-port). Point releases of 6.1 to 6.19 older than
// the backport behave like 5.10: a probe of the running kernel settles it
// (UDPWildcardFix); unprobed, every 6.1 and later kernel is taken as fixed.
func (k Kernel) udpWildcardScansSlot() bool {
	return k.UDPWildcardFix.or(k.AtLeast(6, 1, 0))
}

// SetOptionErr is what setsockopt returns when the socket options of s are
// set: ENOPROTOOPT for one this kernel does not know, EINVAL for an
// IP_LOCAL_PORT_RANGE whose ends are both set and inverted (do_ip_setsockopt),
// 0 when all are accepted.
func (k Kernel) SetOptionErr(s Socket) syscall.Errno {
	if s.PortRange.IsZero() {
		return 0
	}
	if !k.HasPortRangeOpt() {
		return syscall.ENOPROTOOPT
	}
	if r := s.PortRange; r.Lo != 0 && r.Hi != 0 && r.Lo > r.Hi {
		return syscall.EINVAL
	}
	return 0
}
