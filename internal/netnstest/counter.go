package netnstest

import (
	"fmt"
	"strconv"
	"strings"
)

// counterIn finds counter name of group ("Icmp:", "TcpExt:") in the text
// of /proc/net/snmp or /proc/net/netstat, where each group is a line of
// names and then a line of values. found is false when the kernel has no
// such counter.
func counterIn(text, group, name string) (n int, found bool, err error) {
	lines := strings.Split(text, "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != group || len(values) != len(names) {
			continue
		}
		for j, nm := range names {
			if nm == name {
				n, err := strconv.Atoi(values[j])
				if err != nil {
					return 0, true, fmt.Errorf("%s %s: %q is not a count", group, name, values[j])
				}
				return n, true, nil
			}
		}
		return 0, false, nil
	}
	return 0, false, nil
}
