package hostmodel

import (
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

// ProbeIfCrowded probes the running kernel for the fix of CVE-2026-31503
// (ProbeUDPWildcardFix) into host.Kernel where socks crowd a slot of the
// UDP hash past ten sockets, the only case in which it decides a verdict:
// the probe makes a network namespace, not worth it for every table.
func ProbeIfCrowded(host *rules.Host, socks []socktab.Socket) {
	if host.Kernel.UDPWildcardFix == rules.Unprobed && udpSlotCrowded(socks, host.UDPHashSlots) {
		host.Kernel.UDPWildcardFix = ProbeUDPWildcardFix()
	}
}

// udpSlotCrowded reports whether some slot of the kernel's UDP hash (of
// slots slots, a port each when unknown) holds more than ten of the UDP
// sockets of socks.
func udpSlotCrowded(socks []socktab.Socket, slots int) bool {
	if slots <= 0 || slots > 1<<16 {
		slots = 1 << 16
	}
	n := map[int]int{}
	for i := range socks {
		if p := int(socks[i].Local.Port()); socks[i].Proto == inet.UDP && p != 0 {
			if n[p%slots]++; n[p%slots] > 10 {
				return true
			}
		}
	}
	return false
}
