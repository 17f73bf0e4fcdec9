package lab

import (
	"net"
	"strings"
	"testing"
	"time"
)

const cancelTopo = `[x]
host alice via=192.0.2.1
router gw
host web
link alice=192.0.2.2/24 gw=192.0.2.1/24
link gw=198.51.100.1/24 web=198.51.100.2/24
nat gw masquerade out=web
WEB server tcp4 198.51.100.2:80 in=web
A socket tcp4 in=alice
A connect 198.51.100.2:80 => ok
sleep 5s
`

// Cancelling a topology scenario mid-run kills every host's helper, so
// every namespace (and the veth pairs and NAT table in them) goes; nothing
// was ever made in the caller's namespace.
func TestTopologyCancelLeavesNothing(t *testing.T) {
	requireRoot(t)
	// The scenario's own namespace and the three hosts: four root helpers.
	cancelMidRun(t, cancelTopo, 4, 10*time.Second, 5*time.Second)
	for _, name := range []string{"alice", "gw", "web"} {
		if _, err := net.InterfaceByName(name); err == nil {
			t.Errorf("interface %s exists in the test's namespace", name)
		}
	}
}

// A connect through the NAT router reports what the server saw and nat's
// prediction, and the close waits for the router's conntrack TIME_WAIT.
func TestTopologyReportsOutside(t *testing.T) {
	requireRoot(t)
	text := strings.Replace(cancelTopo, "sleep 5s\n", "A close\n", 1)
	res := runOne(t, text)
	var conn, closed Result
	for _, x := range res.Results {
		switch x.Op {
		case "connect 198.51.100.2:80":
			conn = x
		case "close":
			closed = x
		}
	}
	port := conn.Local[strings.Index(conn.Local, ":")+1 : strings.Index(conn.Local, " ")]
	if conn.Outside != "198.51.100.1:"+port || conn.NAT != conn.Outside+" (kept)" || !conn.OK {
		t.Errorf("connect: outside %q, nat %q, ok %v; want 198.51.100.1:%s kept", conn.Outside, conn.NAT, conn.OK, port)
	}
	if !strings.Contains(closed.Local, "conntrack on gw: TIME_WAIT") {
		t.Errorf("close note %q does not show gw's conntrack entry in TIME_WAIT", closed.Local)
	}
}

// What only the topology tells the model: a host without a default route
// cannot reach a far address (ENETUNREACH at once), and a host's closed
// port refuses a connection from another host.
func TestTopologyRoutesAndListeners(t *testing.T) {
	requireRoot(t)
	res := runOne(t, `[x]
host a
host b
link a=192.0.2.2/24 b=192.0.2.3/24
S server tcp4 192.0.2.3:80 in=b
A socket tcp4 in=a
A connect 198.51.100.9:80 => ENETUNREACH
U socket udp4 in=a
U connect 198.51.100.9:53 => ENETUNREACH
B socket tcp4 in=a
B connect 192.0.2.3:81    => ECONNREFUSED
C socket tcp4 in=a
C connect 192.0.2.3:80    => ok
C close
D socket tcp4 in=a uid=1000
D bind 192.0.2.2:0        => ok
D connect 192.0.2.3:@S    => ok
E socket udp4 in=b
E bind 192.0.2.3:@D       => ok
`)
	for _, x := range res.Results {
		if !x.OK {
			t.Errorf("line %d %s %s: kernel %s, model %s, expect %s (%s)", x.Line, x.Socket, x.Op, x.Kernel, x.Model, x.Expect, x.Why)
		}
	}
	// @S and @D name sockets of the other host: their ports, not 0.
	local := map[string]string{}
	for _, x := range res.Results {
		local[x.Socket+" "+strings.Fields(x.Op)[0]] = x.Local
	}
	dconn, ebind := local["D connect"], local["E bind"]
	dport := strings.TrimPrefix(strings.Fields(dconn)[0], "192.0.2.2:")
	if !strings.HasSuffix(dconn, " -> 192.0.2.3:80") || ebind != "192.0.2.3:"+dport {
		t.Errorf("ports across hosts: D connected %q, E bound %q (want D to S's port 80 and E on D's port)", dconn, ebind)
	}
}
