package broker

import (
	"strconv"
	"strings"
)

// ActivationEnv returns env with the systemd socket-activation variables
// for fds descriptors starting at 3, named names, for the process pid:
// LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES. Older LISTEN_* values are removed.
// A server using sd_listen_fds(3) (or Go's coreos/go-systemd activation)
// checks LISTEN_PID against its own pid, so it must be the pid of the
// process that execs the server.
func ActivationEnv(env []string, pid int, names []string) []string {
	out := make([]string, 0, len(env)+3)
	for _, kv := range env {
		if strings.HasPrefix(kv, "LISTEN_PID=") || strings.HasPrefix(kv, "LISTEN_FDS=") || strings.HasPrefix(kv, "LISTEN_FDNAMES=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out,
		"LISTEN_PID="+strconv.Itoa(pid),
		"LISTEN_FDS="+strconv.Itoa(len(names)),
		"LISTEN_FDNAMES="+strings.Join(names, ":"))
}
