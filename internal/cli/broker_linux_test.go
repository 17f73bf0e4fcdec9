package cli

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// TestBrokerConnectListen runs `tuple broker` and, as uid 65534, `tuple
// listen --broker` on port 80 and `tuple connect --broker` from source port
// 700: neither could bind its port itself.
func TestBrokerConnectListen(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t)
	dir, err := os.MkdirTemp("", "tuple-cli-broker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	sock, policy := filepath.Join(dir, "broker.sock"), filepath.Join(dir, "policy.toml")
	os.WriteFile(policy, []byte(`
[[grant]]
uids = [65534]
proto = "tcp"
address = "127.0.0.1"
ports = 80

[[grant]]
uids = [65534]
proto = "tcp"
address = "127.0.0.1"
ports = "700-710"
`), 0o644)
	startIn(t, ns, false, "tuple", "broker", "--policy", policy, "--socket", sock).run(nil)
	waitWithin(t, 20*time.Second, "the broker to come up", func() bool {
		c, err := net.Dial("unixpacket", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	asNobody := func(args ...string) *proc {
		cmd := exec.Command(tupleBin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
		return start(t, cmd, false).run(ns.Do)
	}

	ln := asNobody("listen", "--broker", sock, "-k", "127.0.0.1", "80")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("listener stderr: %s", ln.stderr.String())
		}
	})
	waitListening(t, ns, "80")
	c := asNobody("connect", "--broker", sock, "-v", "-s", "127.0.0.1", "-p", "700", "127.0.0.1", "80")
	c.stdin.Write([]byte("hello from 65534\n"))
	c.stdin.Close()
	if code := c.wait(10 * time.Second); code != 0 {
		t.Fatalf("connect --broker: exit %d: %s", code, c.stderr.String())
	}
	if want := "connected 127.0.0.1:700 -> 127.0.0.1:80 (tcp)\n"; c.stderr.String() != want {
		t.Errorf("connect -v said %q, want %q", c.stderr.String(), want)
	}
	if !ln.stdout.await(10*time.Second, ln.done, func(s string) bool { return s == "hello from 65534\n" }) {
		t.Fatalf("listener got %q", ln.stdout.String())
	}

	ls := startIn(t, ns, false, "tuple", "broker", "ls", "--broker", sock).run(nil)
	if code := ls.wait(10 * time.Second); code != 0 {
		t.Fatalf("broker ls: exit %d: %s", code, ls.stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(ls.stdout.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID  UID") ||
		!strings.Contains(lines[1], "65534") || !strings.Contains(lines[1], "127.0.0.1:80") || !strings.Contains(lines[1], "listen") {
		t.Errorf("broker ls (the connection has ended; the listener lives):\n%s", ls.stdout.String())
	}

	denied := asNobody("listen", "--broker", sock, "127.0.0.1", "81")
	if code := denied.wait(10 * time.Second); code != 1 {
		t.Errorf("listen --broker on a port not granted: exit %d: %s", code, denied.stderr.String())
	}
	golden(t, "listen-broker-denied.txt", denied.stderr.String())
}

func TestBrokerBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[[grant]]\nuids = [1]\nproto = \"sctp\"\n"), 0o644)
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("[[grant]]\nuids = [65534]\nproto = \"tcp\"\naddress = \"127.0.0.1\"\nports = \"8080\"\n"), 0o644)
	notSocket := filepath.Join(dir, "not-a-socket")
	os.WriteFile(notSocket, []byte("keep me\n"), 0o644)
	defer func() {
		if b, err := os.ReadFile(notSocket); err != nil || string(b) != "keep me\n" {
			t.Errorf("the file at --socket was changed: %q, %v", b, err)
		}
	}()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"broker"}, "tuple: broker: --policy FILE is required\n"},
		{[]string{"broker", "--policy", bad}, "tuple: broker: policy " + bad + ": grant #1: proto \"sctp\": want \"tcp\" or \"udp\"\n"},
		{[]string{"broker", "check", bad}, "tuple: broker check: policy " + bad + ": grant #1: proto \"sctp\": want \"tcp\" or \"udp\"\n"},
		{[]string{"broker", "--policy", good, "--socket", notSocket}, "tuple: broker: " + notSocket + " is a regular file, not a unix socket\n"},
		{[]string{"broker", "--policy", good, "--metrics", "127.0.0.1:99999"}, "tuple: broker: --metrics \"127.0.0.1:99999\": bad port \"99999\"\n"},
		{[]string{"broker", "--policy", good, "--metrics", "nonsense"}, "tuple: broker: --metrics \"nonsense\": want ADDR:PORT, e.g. 127.0.0.1:9779\n"},
		{[]string{"broker", "exec", "--listen", "127.0.0.1", "--", "true"}, "tuple: broker exec: 127.0.0.1: want ADDR:PORT\n"},
		{[]string{"broker", "exec", "--", "true"}, "tuple: broker exec: want at least one --listen or --udp ADDR:PORT\n"},
		{[]string{"connect", "--broker", "/x", "-z", "127.0.0.1", "1-2"}, "tuple: connect: --broker hands out one socket; -z would need one per port\n"},
		{[]string{"listen", "--broker", "/x", "localhost", "80"}, "tuple: listen: --broker needs ADDR as a literal IP address, not \"localhost\"\n"},
	} {
		var out, errOut strings.Builder
		code := Main(tc.args, Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
		if code != 2 || errOut.String() != tc.want {
			t.Errorf("tuple %s: exit %d, stderr %q; want exit 2, %q", strings.Join(tc.args, " "), code, errOut.String(), tc.want)
		}
	}
}

// An owner or group of the socket file this host does not know passed
// broker check, and only the broker refused it at start.
func TestBrokerCheckUnknownSocketOwner(t *testing.T) {
	policy := filepath.Join(t.TempDir(), "p.toml")
	os.WriteFile(policy, []byte("[socket]\nowner = \"no-such-user-tuple\"\n[[grant]]\nuids = [65534]\nproto = \"tcp\"\naddress = \"127.0.0.1\"\nports = \"8080\"\n"), 0o644)
	var out, errOut strings.Builder
	code := Main([]string{"broker", "check", policy}, Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
	if want := "[socket]: socket owner \"no-such-user-tuple\""; code != 2 || !strings.Contains(errOut.String(), want) {
		t.Errorf("broker check: exit %d, stderr %q; want 2 and %q", code, errOut.String(), want)
	}
}

// A broker that is not there is named as such: the failure read like the
// TCP connection's own ("connect: no such file or directory").
func TestBrokerUnreachableIsNamed(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-broker.sock")
	for _, args := range [][]string{
		{"connect", "--broker", missing, "127.0.0.1", "80"},
		{"listen", "--broker", missing, "127.0.0.1", "80"},
	} {
		var out, errOut strings.Builder
		code := Main(args, Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
		want := "broker " + missing + ": connect: no such file or directory (ENOENT)"
		if code != 1 || !strings.Contains(errOut.String(), want) {
			t.Errorf("tuple %s: exit %d, stderr %q; want exit 1 and %q", strings.Join(args, " "), code, errOut.String(), want)
		}
	}
}

// A broker's or a hand-over's file that cannot be made names its path and
// the errno: the line said "bind: no such file or directory" alone.
func TestServedPathFailureIsNamed(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("[[grant]]\nuids = [65534]\nproto = \"tcp\"\naddress = \"127.0.0.1\"\nports = \"8080\"\n"), 0o644)
	missing := filepath.Join(dir, "no-such-dir", "x")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"broker", "--policy", good, "--socket", missing}, "tuple: broker: socket " + missing + ": bind: no such file or directory (ENOENT)\n"},
		{[]string{"broker", "--policy", good, "--socket", filepath.Join(dir, "b.sock"), "--audit", missing}, "tuple: broker: --audit " + missing + ": no such file or directory (ENOENT)\n"},
		{[]string{"listen", "-k", "--handover", missing, "127.0.0.1", "0"}, "tuple: listen: --handover " + missing + ": bind: no such file or directory (ENOENT)\n"},
	} {
		var out, errOut strings.Builder
		code := Main(tc.args, Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
		if code != 1 || !strings.HasSuffix(errOut.String(), tc.want) { // listen says first what it opened
			t.Errorf("tuple %s: exit %d, stderr %q; want exit 1, ending %q", strings.Join(tc.args, " "), code, errOut.String(), tc.want)
		}
	}
}
