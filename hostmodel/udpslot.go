package hostmodel

import (
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
	"github.com/tuple-net/tuple/socktab"
)

// ProbeIfCrowded probes the running kernel for the fix of CVE-2026-31503
// (ProbeUDPWildcardFix) into host.Kernel where socks crowd a slot of the
// UDP hash past rules.UDPCrowd sockets, the only case in which it decides
// a verdict: the probe makes a network namespace, not worth it for every
// table.
func ProbeIfCrowded(host *rules.Host, socks []socktab.Socket) {
	if host.Kernel.UDPWildcardFix == rules.Unprobed && udpSlotCrowded(socks, *host) {
		host.Kernel.UDPWildcardFix = ProbeUDPWildcardFix()
	}
}

// udpSlotCrowded reports whether some slot of the kernel's UDP hash
// (rules.Host.UDPSlot) holds more than rules.UDPCrowd of the UDP sockets
// of socks.
func udpSlotCrowded(socks []socktab.Socket, host rules.Host) bool {
	n := map[int]int{}
	for i := range socks {
		if p := socks[i].Local.Port(); socks[i].Proto == inet.UDP && p != 0 {
			slot := host.UDPSlot(p)
			if n[slot]++; n[slot] > rules.UDPCrowd {
				return true
			}
		}
	}
	return false
}
