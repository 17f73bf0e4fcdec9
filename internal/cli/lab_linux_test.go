package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/lab"
)

func TestLabRunOutputs(t *testing.T) {
	exe := tupleBinary(t)
	file := filepath.Join(t.TempDir(), "mine.lab")
	os.WriteFile(file, []byte(`[double-bind]
A socket tcp4
A bind 127.0.0.1:12345
B socket tcp4
B bind 127.0.0.1:12345 => EADDRINUSE
C socket tcp4
C bind 127.0.0.1:12345 => ok
`), 0o644)
	cmd := exec.Command(exe, "lab", "--json", file)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if code := exitStatus(err); code != 1 {
		t.Fatalf("tuple lab --json: exit %d, want 1 (line 7 expects ok, the kernel says EADDRINUSE)\n%s", code, stderr.String())
	}
	var lines []map[string]any
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		lines = append(lines, m)
	}
	if len(lines) != 6 {
		t.Fatalf("want 6 JSON objects, got %d", len(lines))
	}
	for _, k := range []string{"scenario", "line", "socket", "op", "expect", "kernel", "model", "ok"} {
		if _, ok := lines[0][k]; !ok {
			t.Errorf("JSON object lacks %q: %v", k, lines[0])
		}
	}
	if lines[2]["expect"] != nil || lines[0]["model"] != nil {
		t.Errorf("expect/model should be null when absent: %v %v", lines[2], lines[0])
	}
	if l := lines[3]; l["line"] != 5.0 || l["kernel"] != "EADDRINUSE" || l["expect"] != "EADDRINUSE" || l["scenario"] != "double-bind" || l["socket"] != "B" || l["op"] != "bind 127.0.0.1:12345" {
		t.Errorf("line 5: %v", l)
	}
	if l := lines[5]; l["kernel"] != "EADDRINUSE" || l["ok"] != false {
		t.Errorf("line 7 should fail its expectation: %v", l)
	}

	out, err := exec.Command(exe, "lab", "--markdown", "seed").Output()
	if exitStatus(err) != 0 || !strings.Contains(string(out), "| line | socket | operation | expect | kernel | model | ok |") || !strings.Contains(string(out), "`[nc-double-p]`") {
		t.Errorf("tuple lab --markdown seed: exit %d\n%s", exitStatus(err), out)
	}
	out, err = exec.Command(exe, "lab", "seed").Output()
	if exitStatus(err) != 0 || !strings.Contains(string(out), "EADDRINUSE  EADDRINUSE  EADDRINUSE  ✓") {
		t.Errorf("tuple lab seed: exit %d\n%s", exitStatus(err), out)
	}
}

// TestLabInterruptLeavesNothing sends SIGINT to a running tuple lab and
// checks that no helper process and no namespace outlive it; then the same
// with SIGKILL, which the command cannot catch (the helpers' parent-death
// signal takes them down).
func TestLabInterruptLeavesNothing(t *testing.T) {
	exe := tupleBinary(t)
	file := filepath.Join(t.TempDir(), "slow.lab")
	os.WriteFile(file, []byte("[slow]\nA socket tcp4 uid=1000\nA bind 10.9.9.9:7000\nB server tcp4 10.9.9.9:80\nsleep 5s\n"), 0o644)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		cmd := exec.Command(exe, "lab", file)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until both helpers (uid 0 and 1000) are in the lab's
		// namespace, which is not the test's own.
		own, _ := os.Readlink("/proc/self/ns/net")
		var helpers []int
		var seen []string // the helpers' namespaces at the last look
		ns := ""
		// Generous: a new namespace waits for the rtnl lock, which the
		// cleanup of other tests' namespaces can hold for seconds.
		poll(30*time.Second, func() bool {
			helpers = helpersOf(exe)
			seen = seen[:0]
			for _, pid := range helpers {
				n, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
				if err != nil {
					n = err.Error()
				}
				seen = append(seen, n)
			}
			if len(seen) == 2 && seen[0] == seen[1] && strings.HasPrefix(seen[0], "net:") && seen[0] != own {
				ns = seen[0]
			}
			return ns != ""
		})
		if ns == "" {
			// Say what the lab did: still running (then killed), or
			// ended on its own, with what it printed.
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			state := "still running after 30s, killed"
			select {
			case err := <-exited:
				state = fmt.Sprintf("ended by itself (exit %d)", exitStatus(err))
			case <-time.After(time.Second):
				cmd.Process.Kill()
				<-exited
			}
			t.Fatalf("%v: want 2 helpers in one new namespace (the test's is %s), found %v in %v; the lab %s; stderr: %q", sig, own, helpers, seen, state, stderr.String())
		}
		// The namespace is unnamed: it is not mounted under /run/netns, so
		// it lives exactly as long as a process is in it (the helpers).
		if name := namedAs(ns); name != "" {
			t.Errorf("lab namespace %s is mounted as %s", ns, name)
		}
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		if sig == syscall.SIGINT {
			if exitStatus(err) != 1 || !strings.Contains(stderr.String(), "interrupted") {
				t.Errorf("after SIGINT: exit %d, stderr %q", exitStatus(err), stderr.String())
			}
		}
		poll(3*time.Second, func() bool { return len(helpersOf(exe)) == 0 })
		if left := helpersOf(exe); len(left) > 0 {
			t.Errorf("%v: helpers left: %v", sig, left)
		}
	}
}

func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// procs calls fn with each process's pid directory name.
func procs(fn func(pid string)) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if n := e.Name(); n[0] >= '0' && n[0] <= '9' {
			fn(n)
		}
	}
}

// helpersOf lists live helper processes of binary exe.
func helpersOf(exe string) []int {
	var out []int
	procs(func(pid string) {
		b, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err != nil {
			return
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 1 && args[0] == exe && args[1] == lab.HelperCommand {
			n, _ := strconv.Atoi(pid)
			out = append(out, n)
		}
	})
	return out
}

// namedAs returns the name under /run/netns (ip netns) that namespace ns
// ("net:[INODE]") is mounted as, or "". Other tests on the machine create
// and delete named namespaces, so the check is by inode, not by listing,
// and only while the namespace is alive (inode numbers are reused).
func namedAs(ns string) string {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		var st syscall.Stat_t
		if syscall.Stat("/run/netns/"+e.Name(), &st) == nil && ns == "net:["+strconv.FormatUint(st.Ino, 10)+"]" {
			return e.Name()
		}
	}
	return ""
}

// TestLabRepeatMarksFlaky runs a scenario whose kernel answer is a coin
// toss (UDP bind(0) starts at a random port of a two-port range; a second
// socket then binds the first port) forty times: the line must come out
// flaky with both answers counted, and the run must exit 1 (twelve tosses
// all alike would come once in 2,048 runs; forty, once in 5e11). A second
// scenario is stable and must stay ok.
func TestLabRepeatMarksFlaky(t *testing.T) {
	exe := tupleBinary(t)
	file := filepath.Join(t.TempDir(), "coin.lab")
	os.WriteFile(file, []byte(`[coin]
sysctl net.ipv4.ip_local_port_range=40000 40001
A socket udp4
A bind 127.0.0.1:0
B socket udp4
B bind 127.0.0.1:40000
[steady]
A socket tcp4
A bind 127.0.0.1:7000 => ok
`), 0o644)
	cmd := exec.Command(exe, "lab", "--json", "--repeat", "40", file)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if code := exitStatus(cmd.Run()); code != 1 {
		t.Fatalf("exit %d, want 1 (a flaky line)\n%s", code, stderr.String())
	}
	byLine := map[float64]map[string]any{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		if m["scenario"] == "coin" || m["line"] == 9.0 {
			byLine[m["line"].(float64)] = m
		}
	}
	b := byLine[6]
	seen, _ := b["kernel_seen"].(map[string]any)
	if b["flaky"] != true || b["ok"] != false || b["runs"] != 40.0 || seen["ok"] == nil || seen["EADDRINUSE"] == nil {
		t.Errorf("line 6 (bind of the port A may hold): %v, want flaky with ok and EADDRINUSE seen", b)
	}
	if a := byLine[4]; a["flaky"] != false || a["ok"] != true {
		t.Errorf("line 4 (A's bind(0), always ok): %v, want not flaky", a)
	}
	if s := byLine[9]; s["flaky"] != false || s["ok"] != true {
		t.Errorf("steady scenario: %v", s)
	}
	if !strings.Contains(stderr.String(), "1 flaky") {
		t.Errorf("summary does not count the flaky line: %s", stderr.String())
	}
}

// TestLabTimeout stops a run that outlasts --timeout, with no helper left.
func TestLabTimeout(t *testing.T) {
	exe := tupleBinary(t)
	file := filepath.Join(t.TempDir(), "slow.lab")
	os.WriteFile(file, []byte("[slow]\nA socket tcp4 uid=1000\nsleep 5s\n"), 0o644)
	start := time.Now()
	out, err := exec.Command(exe, "lab", "--timeout", "300ms", file).CombinedOutput()
	if code := exitStatus(err); code != 1 || !strings.Contains(string(out), "exceeded --timeout 300ms") {
		t.Errorf("exit %d, output %q; want 1 and the timeout named", code, out)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("took %v with --timeout 300ms", d)
	}
}

// TestLabFileQuirks: a file that starts with a UTF-8 byte-order mark runs,
// one with an open-ended port range and multicast addresses runs with the
// kernel's answers, and one that asks for more uids than the helper cap is
// bad input (exit 2) naming the cap.
func TestLabFileQuirks(t *testing.T) {
	exe := tupleBinary(t)
	dir := t.TempDir()
	bom := filepath.Join(dir, "bom.lab")
	os.WriteFile(bom, []byte("\xef\xbb\xbf[bom]\nA socket tcp4\nA bind 127.0.0.1:0 => ok\n"), 0o644)
	if out, err := exec.Command(exe, "lab", bom).CombinedOutput(); exitStatus(err) != 0 {
		t.Errorf("BOM-prefixed file: exit %d\n%s", exitStatus(err), out)
	}
	odd := filepath.Join(dir, "odd.lab")
	os.WriteFile(odd, []byte(`[odd]
sysctl net.ipv4.ip_local_port_range=40000 40009
A socket tcp4 port-range=0-40000
A bind 127.0.0.1:0 => ok
B socket udp4 port-range=40009-0
B bind 224.0.0.1:0 => ok
C socket tcp4
C connect 224.0.0.1:80 => ENETUNREACH
D socket tcp4 port-range=40005-40001 => EINVAL
`), 0o644)
	out, err := exec.Command(exe, "lab", "--json", odd).Output()
	if exitStatus(err) != 0 {
		t.Fatalf("open range and multicast: exit %d\n%s", exitStatus(err), out)
	}
	for _, want := range []string{`"local":"127.0.0.1:40000"`, `"local":"224.0.0.1:40009"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %s (the open end clamps to the namespace range):\n%s", want, out)
		}
	}
	var b strings.Builder
	b.WriteString("[many]\n")
	for i := 1; i <= lab.MaxUIDs; i++ {
		b.WriteString("S" + strconv.Itoa(i) + " socket tcp4 uid=" + strconv.Itoa(1000+i) + "\n")
	}
	many := filepath.Join(dir, "many.lab")
	os.WriteFile(many, []byte(b.String()), 0o644)
	out, err = exec.Command(exe, "lab", many).CombinedOutput()
	if exitStatus(err) != 2 || !strings.Contains(string(out), "at most 16") {
		t.Errorf("17 uids: exit %d, %q; want 2 naming the cap", exitStatus(err), out)
	}
}

// TestLabFailedSysctlExits1: a sysctl the kernel refuses (an inverted
// ip_local_port_range, a key no kernel has) fails its line and the run
// (exit 1), the table naming the errno in words on the line; the same
// lines expecting the errors pass (exit 0).
func TestLabFailedSysctlExits1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (CI runs as root)")
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.lab")
	os.WriteFile(bad, []byte("[x]\nsysctl net.ipv4.ip_local_port_range=40001 40000\nsysctl net.ipv4.nosuch=1\nA socket tcp4\nA bind 127.0.0.1:0 => ok\n"), 0o644)
	code, out, errOut := run(t, "", "lab", bad)
	if code != 1 {
		t.Errorf("tuple lab with refused sysctls: exit %d, want 1\n%s%s", code, out, errOut)
	}
	rows := regexp.MustCompile(`(?m)^  ([23]) +- +sysctl .* (EINVAL|ENOENT) +- +✗ +not done: (.*)$`).FindAllStringSubmatch(out, -1)
	if len(rows) != 2 || !strings.HasPrefix(rows[0][3], "EINVAL (invalid argument)") || !strings.HasPrefix(rows[1][3], "ENOENT (no such file or directory)") {
		t.Errorf("want lines 2 and 3 failed with the errno in words:\n%s", out)
	}
	if !strings.Contains(out, "[x]  "+bad+":1") || !strings.Contains(out, "2 ok, 2 where the kernel did not meet the expectation") {
		t.Errorf("want the file in the header and the summary counting 2 failed lines:\n%s", out)
	}
	good := filepath.Join(dir, "good.lab")
	os.WriteFile(good, []byte("[x]\nsysctl net.ipv4.ip_local_port_range=40001 40000 => EINVAL\nsysctl net.ipv4.nosuch=1 => ENOENT\nA socket tcp4\nA bind 127.0.0.1:0 => ok\n"), 0o644)
	if code, out, errOut := run(t, "", "lab", good); code != 0 {
		t.Errorf("tuple lab with the errors expected: exit %d, want 0\n%s%s", code, out, errOut)
	}
}

// seconds matches the run times lab prints.
var seconds = regexp.MustCompile(`\d+\.\d+s\b`)

// TestLabOutputGolden runs a fixed scenario file in process (the test
// binary serves as the lab's helpers through internal/reexec) and compares
// the text and markdown reports, run times aside, with golden files.
func TestLabOutputGolden(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (CI runs as root)")
	}
	for _, format := range [][]string{nil, {"--markdown"}} {
		args := append([]string{"lab", "testdata/lab/reuseaddr.lab"}, format...)
		code, out, errOut := run(t, "", args...)
		if code != 0 {
			t.Fatalf("tuple %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		golden(t, "lab_reuseaddr"+strings.Join(format, "")+".txt", seconds.ReplaceAllString(out, "N.Ns"))
	}
}
