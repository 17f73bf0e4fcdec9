package cli

import (
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// seedNS is the seed question's setup: a client address and two servers,
// each running `tuple listen -k` on port 80.
func seedNS(t *testing.T) *netnstest.NS {
	t.Helper()
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32")
	for _, server := range []string{"10.0.0.2", "10.0.0.3"} {
		startIn(t, ns, false, "tuple", "listen", "-k", "-v", server, "80").run(nil).waitStderr("listening on " + server + ":80")
	}
	return ns
}

// connectFrom12345 starts `tuple connect -v -s 10.0.0.1 -p 12345 [reuse...] DEST 80`
// with stdin held open by the test.
func connectFrom12345(t *testing.T, ns *netnstest.NS, dest string, reuse ...string) *proc {
	t.Helper()
	args := append([]string{"connect", "-v", "-s", "10.0.0.1", "-p", "12345"}, reuse...)
	return startIn(t, ns, false, "tuple", append(args, dest, "80")...).run(nil)
}

// established lists "local peer" of the namespace's ESTABLISHED TCP sockets
// with local port 12345, as the kernel reports them through ss.
func established(t *testing.T, ns *netnstest.NS) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(ns.Run(t, "ss", "-Htn", "state", "established", "sport = :12345"), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 {
			out = append(out, f[len(f)-2]+" "+f[len(f)-1])
		}
	}
	sort.Strings(out)
	return out
}

func TestConnectSharesSourcePort(t *testing.T) {
	for _, opt := range []string{"--reuseport", "--reuseaddr"} {
		t.Run(opt, func(t *testing.T) {
			ns := seedNS(t)
			a := connectFrom12345(t, ns, "10.0.0.2", opt)
			a.waitStderr("connected 10.0.0.1:12345 -> 10.0.0.2:80 (tcp)")
			b := connectFrom12345(t, ns, "10.0.0.3", opt)
			b.waitStderr("connected 10.0.0.1:12345 -> 10.0.0.3:80 (tcp)")

			want := []string{"10.0.0.1:12345 10.0.0.2:80", "10.0.0.1:12345 10.0.0.3:80"}
			if got := established(t, ns); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("kernel's ESTABLISHED sockets on port 12345: %q, want %q", got, want)
			}
			// Ending stdin half-closes; the servers close; both exit 0.
			a.stdin.Close()
			b.stdin.Close()
			if code := a.wait(10 * time.Second); code != 0 {
				t.Errorf("first connect exited %d: %s", code, a.stderr.String())
			}
			if code := b.wait(10 * time.Second); code != 0 {
				t.Errorf("second connect exited %d: %s", code, b.stderr.String())
			}
		})
	}
}

// failsWith checks a failed connect: exit 1, and the whole of stderr (the
// error line with the operation, both addresses and the errno, the hint,
// and with -v the explanation) against testdata/golden/NAME.
func failsWith(t *testing.T, p *proc, name string) {
	t.Helper()
	code := p.wait(10 * time.Second)
	stderr := p.stderr.String()
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, stderr)
	}
	golden(t, name, hostStable(stable(stderr)))
}

func TestConnectSourcePortConflicts(t *testing.T) {
	t.Run("no reuse option", func(t *testing.T) {
		ns := seedNS(t)
		connectFrom12345(t, ns, "10.0.0.2").waitStderr("connected")
		b := connectFrom12345(t, ns, "10.0.0.3")
		failsWith(t, b, "connect-12345-in-use.txt")
		if got := established(t, ns); len(got) != 1 {
			t.Errorf("the failed bind must not fall back to another port: sockets %q", got)
		}
	})
	t.Run("one side without reuse", func(t *testing.T) {
		ns := seedNS(t)
		connectFrom12345(t, ns, "10.0.0.2").waitStderr("connected")
		failsWith(t, connectFrom12345(t, ns, "10.0.0.3", "--reuseport"), "connect-12345-reuseport-one-side.txt")
	})
	t.Run("same destination", func(t *testing.T) {
		ns := seedNS(t)
		connectFrom12345(t, ns, "10.0.0.2", "--reuseport").waitStderr("connected")
		b := connectFrom12345(t, ns, "10.0.0.2", "--reuseport")
		failsWith(t, b, "connect-12345-same-destination.txt")
	})
	t.Run("source address not local", func(t *testing.T) {
		ns := seedNS(t)
		p := startIn(t, ns, false, "tuple", "connect", "-v", "-s", "10.0.0.9", "-p", "12345", "10.0.0.2", "80").run(nil)
		// The error, the hint, then the explanation from the socket table
		// and the rules model.
		failsWith(t, p, "connect-source-not-local.txt")
	})
	t.Run("different uid", func(t *testing.T) {
		ns := seedNS(t)
		connectFrom12345(t, ns, "10.0.0.2", "--reuseport").waitStderr("connected")
		// Started from a thread inside the namespace (ip netns exec needs
		// root), as uid/gid 65534.
		cmd := exec.Command(tupleBin, "connect", "-v", "-s", "10.0.0.1", "-p", "12345", "--reuseport", "10.0.0.3", "80")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		b := start(t, cmd, false).run(ns.Do)
		failsWith(t, b, "connect-12345-different-uid.txt")
	})
}

func TestListenReuseportSharesConnections(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	var servers []*proc
	for range 2 {
		p := startIn(t, ns, false, "tuple", "listen", "-k", "-v", "--reuseport", "10.0.0.1", "8080").run(nil)
		p.waitStderr("listening on 10.0.0.1:8080 (tcp)")
		servers = append(servers, p)
	}
	// A third listener without the option is refused.
	third := startIn(t, ns, false, "tuple", "listen", "10.0.0.1", "8080").run(nil)
	if code := third.wait(10 * time.Second); code != 1 {
		t.Errorf("listen without --reuseport next to two reuseport listeners: exit %d, %s", code, third.stderr.String())
	}
	golden(t, "listen-8080-beside-reuseport.txt", stable(third.stderr.String()))

	const conns = 40
	err := ns.Do(func() error {
		for i := range conns {
			c, err := net.Dial("tcp", "10.0.0.1:8080")
			if err != nil {
				return err
			}
			c.Write([]byte{byte('a' + i%26)})
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = c.Read(make([]byte, 1)) // EOF once the server closed
			c.Close()
			if err != io.EOF {
				return fmt.Errorf("connection %d: read %v, want EOF from the server", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	counts := make([]int, len(servers))
	poll(10*time.Second, func() bool {
		total = 0
		for i, p := range servers {
			counts[i] = strings.Count(p.stderr.String(), "closed 10.0.0.1:8080 <- ")
			total += counts[i]
		}
		return total == conns
	})
	if total != conns || counts[0] == 0 || counts[1] == 0 {
		t.Errorf("connections served per listener %v (total %d of %d): both must get some", counts, total, conns)
	}
}

// timeWaitLeft matches a TIME_WAIT entry's time left, which differs between runs.
var timeWaitLeft = regexp.MustCompile(`\b\d+ s\b`)

// A listener's SO_REUSEADDR (on by default, as Go sets it) is what lets it
// start again while its last connection is in TIME_WAIT; --reuseaddr=false
// shows the kernel refusing without it.
func TestListenReuseaddrAndTimeWait(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	server := startIn(t, ns, false, "tuple", "listen", "-v", "10.0.0.1", "9000").run(nil)
	server.waitStderr("listening on")
	err := ns.Do(func() error {
		c, err := net.Dial("tcp", "10.0.0.1:9000")
		if err != nil {
			return err
		}
		defer c.Close()
		server.stdin.Close() // the server half-closes first, so it ends in TIME_WAIT
		_, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if code := server.wait(10 * time.Second); code != 0 {
		t.Fatalf("listen exited %d: %s", code, server.stderr.String())
	}
	if tw := ns.Run(t, "ss", "-Htn", "state", "time-wait", "sport = :9000"); !strings.Contains(tw, "10.0.0.1:9000") {
		t.Fatalf("want the server's connection in TIME_WAIT, ss shows %q", tw)
	}
	strict := startIn(t, ns, false, "tuple", "listen", "--reuseaddr=false", "10.0.0.1", "9000").run(nil)
	if code := strict.wait(10 * time.Second); code != 1 {
		t.Errorf("listen --reuseaddr=false next to TIME_WAIT: exit %d, %s", code, strict.stderr.String())
	}
	// The hint is the model's: the TIME_WAIT entry, and that SO_REUSEADDR
	// would let the listener bind.
	golden(t, "listen-9000-time-wait-no-reuseaddr.txt", timeWaitLeft.ReplaceAllString(strict.stderr.String(), "N s"))
	startIn(t, ns, false, "tuple", "listen", "-v", "10.0.0.1", "9000").run(nil).waitStderr("listening on 10.0.0.1:9000")
}
