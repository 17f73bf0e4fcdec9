package cli

import (
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// tuple exporter on a port another program listens on reports it as
// tuple listen does: the operation, the address and the errno in words on
// one line, then a hint naming what holds the port and why (from the socket
// table and the rules model), with none of listen's flags.
func TestExporterListenInUse(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	holder := startIn(t, ns, false, "tuple", "listen", "-k", "-v", "10.0.0.1", "9779").run(nil)
	holder.waitStderr("listening on 10.0.0.1:9779")
	exp := startIn(t, ns, false, "tuple", "exporter", "--listen", "10.0.0.1:9779").run(nil)
	if code := exp.wait(20 * time.Second); code != 1 {
		t.Errorf("exporter on a port in use: exit %d, want 1; stderr %s", code, exp.stderr.String())
	}
	golden(t, "exporter-listen-in-use.txt", stable(exp.stderr.String()))
}
