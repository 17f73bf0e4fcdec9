package cli

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/internal/netnstest"
	"golang.org/x/sys/unix"
)

// tcpSocket makes a TCP socket bound to addr with the given SOL_SOCKET
// options on; listen when listen is set. Closed when t ends.
func tcpSocket(t *testing.T, addr string, listen bool, opts ...int) int {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		t.Fatal(err)
	}
	if listen {
		if err := unix.Listen(fd, 4); err != nil {
			t.Fatal(err)
		}
	}
	return fd
}

// runIn runs tuple inside the namespace.
func runIn(t *testing.T, ns *netnstest.NS, args ...string) (code int, out, errOut string) {
	t.Helper()
	ns.Do(func() error {
		code, out, errOut = run(t, "", args...)
		return nil
	})
	return
}

func TestLsAndWhoInNamespace(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32")
	var bound, rpListener int
	ns.Do(func() error {
		bound = tcpSocket(t, "10.0.0.1:7100", false)
		rpListener = tcpSocket(t, "127.0.0.1:7101", true, unix.SO_REUSEADDR, unix.SO_REUSEPORT)
		tcpSocket(t, "127.0.0.1:7102", true)
		return nil
	})
	pid := strconv.Itoa(os.Getpid())
	// The kernel's procfs view does not list the bound-only socket (port
	// 7100 = 0x1BBC); the listener (7101 = 0x1BBD) is there.
	if proc := ns.Run(t, "cat", "/proc/net/tcp"); strings.Contains(proc, ":1BBC ") || !strings.Contains(proc, ":1BBD ") {
		t.Errorf("/proc/net/tcp:\n%s", proc)
	}

	// Bound-only sockets: in -a and --state bound, not in the default view.
	code, out, errOut := runIn(t, ns, "ls", "-a", "-p")
	if code != 0 || !containsLine(out, "tcp", "BOUND", "10.0.0.1:7100", "pid="+pid+",fd="+strconv.Itoa(bound)) {
		t.Errorf("ls -a -p: exit %d, out:\n%s%s", code, out, errOut)
	}
	if !containsLine(out, "LISTEN", "127.0.0.1:7101", "fd="+strconv.Itoa(rpListener)) {
		t.Errorf("ls -a -p: listener missing:\n%s", out)
	}
	if _, out, _ := runIn(t, ns, "ls"); strings.Contains(out, "7100") || strings.Contains(out, "7101") {
		t.Errorf("default ls shows bound or listening sockets:\n%s", out)
	}
	if _, out, _ := runIn(t, ns, "ls", "--state", "bound"); !strings.Contains(out, "10.0.0.1:7100") || strings.Contains(out, "7101") {
		t.Errorf("ls --state bound:\n%s", out)
	}
	if _, out, _ := runIn(t, ns, "ls", "-l", "--sport", "7101"); !strings.Contains(out, "127.0.0.1:7101") || strings.Contains(out, "7102") || strings.Contains(out, "7100") {
		t.Errorf("ls -l --sport 7101:\n%s", out)
	}
	if _, out, _ := runIn(t, ns, "ls", "-a", "--uid", "12345"); strings.Count(out, "\n") != 1 {
		t.Errorf("ls --uid 12345 should print only the header:\n%s", out)
	}

	// JSON: one object per line with the documented fields.
	_, out, _ = runIn(t, ns, "ls", "-ta", "-o", "--json")
	var sawBound bool
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var j map[string]any
		if err := json.Unmarshal([]byte(line), &j); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		for _, f := range []string{"proto", "family", "state", "local_addr", "local_port", "peer_addr", "peer_port", "recv_q", "send_q", "uid", "inode", "cookie", "v6only", "time_left_ms", "options", "owners"} {
			if _, ok := j[f]; !ok {
				t.Errorf("line %q lacks %q", line, f)
			}
		}
		if j["state"] == "bound" && j["local_port"] == float64(7100) {
			sawBound = true
			ra := j["options"].(map[string]any)["reuseaddr"].(map[string]any)
			if ra["known"] != true || ra["value"] != false {
				t.Errorf("bound socket reuseaddr %v, want known false", ra)
			}
		}
	}
	if !sawBound {
		t.Errorf("ls --json: no bound socket on 7100:\n%s", out)
	}

	// Whole outputs, the test's pid and descriptors aside (one row per
	// ls: rows of one state come in the kernel's hash order).
	for _, args := range [][]string{
		{"ls", "-p", "--state", "bound"}, {"ls", "-l", "-o", "--sport", "7101"}, {"who", "7101"}, {"who", "10.0.0.1:7100"}, {"why", "bind", "10.0.0.1:7100"},
	} {
		code, out, errOut := runIn(t, ns, args...)
		want := 0
		if args[0] == "why" {
			want = 1 // the bind would fail
		}
		if code != want {
			t.Errorf("tuple %s: exit %d, want %d", strings.Join(args, " "), code, want)
		}
		golden(t, strings.NewReplacer(":", "-").Replace(strings.Join(args, "_"))+".txt", stable(out+errOut))
		// The owner is this process, whatever its pid.
		if args[0] == "who" && !strings.Contains(out, "pid="+pid) {
			t.Errorf("tuple %s does not name this process (pid %s) as the owner:\n%s", strings.Join(args, " "), pid, out)
		}
	}
	if _, out, _ := runIn(t, ns, "who", "127.0.0.1:7100"); !strings.Contains(out, "nothing holds port 127.0.0.1:7100") {
		t.Errorf("who 127.0.0.1:7100 (non-overlapping address):\n%s", out)
	}
	_, out, _ = runIn(t, ns, "who", "7102", "--json")
	var j struct {
		Port    int          `json:"port"`
		Sockets []jsonSocket `json:"sockets"`
		Sharing []sharing    `json:"sharing"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("who --json: %v: %s", err, out)
	}
	if j.Port != 7102 || len(j.Sockets) != 1 || j.Sockets[0].State != "listen" || len(j.Sockets[0].Owners) != 1 ||
		j.Sharing[0].Verdict != "none" || j.Sharing[1].Verdict != "free" {
		t.Errorf("who 7102 --json: %+v", j)
	}
}

// TestWhoTimeWait: a TIME_WAIT holder shows its time left and why its
// options are unknown.
func TestWhoTimeWait(t *testing.T) {
	ns := netnstest.New(t)
	ns.Do(func() error {
		l := tcpSocket(t, "127.0.0.1:7200", true)
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if c >= 0 {
				unix.Close(c)
			}
		}()
		if err := unix.Bind(c, &unix.SockaddrInet4{Port: 7201, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		if err := unix.Connect(c, &unix.SockaddrInet4{Port: 7200, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		a, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(c) // the active closer keeps TIME_WAIT
		c = -1
		waitTCPState(t, ns, "fin-wait-2", 7201)
		unix.Close(a)
		return nil
	})
	waitTCPState(t, ns, "time-wait", 7201)
	// As root the kernel's records give the entry's flags (none here), so
	// the verdict is certain, and it comes first. The time left counts
	// down from 60 s.
	for _, args := range [][]string{{"who", "7201"}, {"who", "7201", "--all"}} {
		_, out, _ := runIn(t, ns, args...)
		if !timeLeft.MatchString(out) {
			t.Errorf("tuple %s shows no time left:\n%s", strings.Join(args, " "), out)
		}
		golden(t, strings.Join(args, "_")+".txt", timeLeft.ReplaceAllString(out, "time-left=T"))
	}
}

// timeLeft matches a TIME_WAIT entry's time left (at most 60 s).
var timeLeft = regexp.MustCompile(`time-left=(60|[1-5]?\d)(\.\d+)?s`)

// containsLine reports whether one line of out contains every part.
func containsLine(out string, parts ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// ls --pid P for a process whose sockets are in another namespace printed
// an empty table without a word; for no such process as well.
func TestLsPidElsewhereSaysWhy(t *testing.T) {
	ns := netnstest.New(t)
	sleeper := ns.Command(context.Background(), "sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	// ip netns exec execs sleep in the namespace: wait until it has.
	pid := strconv.Itoa(sleeper.Process.Pid)
	waitFor(t, "sleep in the namespace", func() bool {
		comm, _ := os.ReadFile("/proc/" + pid + "/comm")
		return strings.TrimSpace(string(comm)) == "sleep"
	})
	_, _, errOut := run(t, "", "ls", "--pid", pid)
	if want := "process " + pid + " is in another network namespace: tuple ls --pid " + pid + " --netns " + pid; !strings.Contains(errOut, want) {
		t.Errorf("ls --pid %s: stderr %q, want %q", pid, errOut, want)
	}
	if code, out, errOut := run(t, "", "ls", "--pid", "999999999"); code != 1 || out != "" || !strings.Contains(errOut, "--pid 999999999: no such process") {
		t.Errorf("ls --pid 999999999: exit %d, stdout %q, stderr %q; want 1, nothing listed, and that there is no such process", code, out, errOut)
	}
}

// TestLsOptionsOfUnacceptedChild: a connection waiting in a listener's
// accept queue has no file, so no owner's descriptor gives its options;
// the kernel's records do (it inherits SO_REUSEADDR from the listener),
// and ls -o says what who says; who names the queue it waits in.
func TestLsOptionsOfUnacceptedChild(t *testing.T) {
	ns := netnstest.New(t)
	var client netip.AddrPort
	ns.Do(func() error {
		tcpSocket(t, "127.0.0.1:7103", true, unix.SO_REUSEADDR)
		fd := tcpSocket(t, "127.0.0.1:7104", false)
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 7103, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		client = netip.MustParseAddrPort("127.0.0.1:7104")
		return nil
	})
	_, out, errOut := runIn(t, ns, "ls", "-ta", "-o", "--sport", "7103", "--json")
	var child map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var j map[string]any
		if err := json.Unmarshal([]byte(line), &j); err != nil {
			t.Fatalf("ls --json line %q: %v (%s)", line, err, errOut)
		}
		if j["state"] == "established" && j["peer_port"] == float64(client.Port()) {
			child = j
		}
	}
	if child == nil {
		t.Fatalf("ls -ta -o --sport 7103: no unaccepted child of the listener:\n%s%s", out, errOut)
	}
	ra := child["options"].(map[string]any)["reuseaddr"].(map[string]any)
	if ra["known"] != true || ra["value"] != true {
		t.Errorf("the unaccepted child's reuseaddr is %v; want known, true (inherited from the listener)", ra)
	}
	want := "tcp ESTAB 127.0.0.1:7103 -> 127.0.0.1:7104 uid=0\n    options: reuseaddr\n" +
		"    processes: none yet (not accepted: in the accept queue of the listener on 127.0.0.1:7103)"
	if _, who, _ := runIn(t, ns, "who", "7103"); !strings.Contains(who, want) {
		t.Errorf("who 7103 does not give the child's reuseaddr and queue:\n%s\nwant:\n%s", who, want)
	}
}
