package cli

import (
	"path/filepath"
	"testing"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// TestListenVerboseNamesFamily: `listen -v -4 P` and `-6 P` printed
// "listening on *:P" though each socket serves one family; * is left for
// the one socket that serves both (no ADDR, no -4/-6).
func TestListenVerboseNamesFamily(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-4", "7301"}, "listening on 0.0.0.0:7301 (tcp)"},
		{[]string{"-6", "7302"}, "listening on [::]:7302 (tcp)"},
		{[]string{"7303"}, "listening on *:7303 (tcp)"},
		{[]string{"-u", "-4", "7304"}, "listening on 0.0.0.0:7304 (udp)"},
		{[]string{"-u", "-6", "7305"}, "listening on [::]:7305 (udp)"},
		{[]string{"-k", "--handover", filepath.Join(t.TempDir(), "h.sock"), "-6", "7306"}, "listening on [::]:7306 (tcp), 1 listener(s) opened"},
	} {
		p := startIn(t, ns, false, "tuple", append([]string{"listen", "-v"}, tc.args...)...).run(nil)
		p.waitStderr(tc.want)
		p.cmd.Process.Kill()
		<-p.done
	}
}
