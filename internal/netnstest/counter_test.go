package netnstest

import "testing"

func TestCounterIn(t *testing.T) {
	const snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nIcmp: InMsgs OutRateLimitGlobal\nIcmp: 7 3\nTcpExt: X\nTcpExt: bad\n"
	for _, c := range []struct {
		group, name string
		n           int
		found, err  bool
	}{
		{"Icmp:", "OutRateLimitGlobal", 3, true, false},
		{"Icmp:", "InMsgs", 7, true, false},
		{"Ip:", "DefaultTTL", 64, true, false},
		{"Icmp:", "OutRateLimitHost", 0, false, false}, // a kernel without it
		{"Udp:", "InErrors", 0, false, false},          // no such group
		{"TcpExt:", "X", 0, true, true},                // not a number
	} {
		n, found, err := counterIn(snmp, c.group, c.name)
		if n != c.n || found != c.found || (err != nil) != c.err {
			t.Errorf("%s %s: %d, %v, %v; want %d, %v, error %v", c.group, c.name, n, found, err, c.n, c.found, c.err)
		}
	}
}
