package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// TestCommandsAcrossNamespaces holds a listener in each of 50 namespaces
// from this one process (a process in several namespaces, as a pod's
// sidecar or a CNI daemon is): ls --netns all lists each with its
// namespace and owner, who names the one namespace and process holding a
// port, and why and ports answer inside the namespace named.
func TestCommandsAcrossNamespaces(t *testing.T) {
	netnstest.RequireRoot(t)
	names := holdInNamespaces(t, 50)
	pid := os.Getpid()
	lsAcrossNamespaces(t, names, pid)
	whoAcrossNamespaces(t, names, pid)
	whyAndPortsInNamespace(t, names)
	netnsBadInput(t)
}

// holdInNamespaces makes n namespaces, the i-th holding a listener on
// 127.0.0.1:7400+i, and returns their names.
func holdInNamespaces(t *testing.T, n int) []string {
	names := make([]string, n)
	for i := range n {
		ns := netnstest.New(t)
		names[i] = ns.Name
		if err := ns.Do(func() error {
			ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", 7400+i))
			if err == nil {
				t.Cleanup(func() { ln.Close() })
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// lsAcrossNamespaces: ls --netns all lists each listener once, with its
// namespace and this process as owner.
func lsAcrossNamespaces(t *testing.T, names []string, pid int) {
	n := len(names)
	code, out, errOut := run(t, "", "ls", "-l", "-t", "-p", "--netns", "all", "--json")
	if code != 0 {
		t.Fatalf("ls --netns all: exit %d: %s", code, errOut)
	}
	// Other tests (and other runs of this one) may hold the same ports in
	// namespaces of their own: look only at ours.
	ours := map[string]bool{}
	for _, name := range names {
		ours[name] = true
	}
	seen := map[uint16]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var j jsonSocket
		if err := json.Unmarshal([]byte(line), &j); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		if j.NetNS == nil {
			t.Fatalf("socket %s:%d has no netns", j.LocalAddr, j.LocalPort)
		}
		if !ours[j.NetNS.Name] {
			continue
		}
		if prev, dup := seen[j.LocalPort]; dup {
			t.Errorf("port %d listed twice (%s, %s)", j.LocalPort, prev, j.NetNS.Name)
		}
		seen[j.LocalPort] = j.NetNS.Name
		if want := names[j.LocalPort-7400]; j.NetNS.Name != want || j.NetNS.Inode == 0 {
			t.Errorf("port %d in netns %+v, want %s", j.LocalPort, j.NetNS, want)
		}
		if len(j.Owners) != 1 || j.Owners[0].PID != pid {
			t.Errorf("port %d owners %+v, want pid %d", j.LocalPort, j.Owners, pid)
		}
	}
	if len(seen) != n {
		t.Errorf("ls --netns all found %d of the %d listeners", len(seen), n)
	}
}

// whoAcrossNamespaces: who names the namespace and the process.
func whoAcrossNamespaces(t *testing.T, names []string, pid int) {
	code, out, errOut := run(t, "", "who", "7420", "--netns", "all")
	if code != 0 {
		t.Fatalf("who --netns all: exit %d: %s", code, errOut)
	}
	// One section among our namespaces, for names[20], naming this process.
	sections := 0
	for _, name := range names {
		if strings.Contains(out, "netns "+name+" (") {
			sections++
		}
	}
	section, _, _ := strings.Cut(out[max(0, strings.Index(out, "netns "+names[20]+" (")):], "\n\nnetns ")
	if sections != 1 || !strings.HasPrefix(section, "netns "+names[20]+" (") || !strings.Contains(section, "pid="+strconv.Itoa(pid)) {
		t.Errorf("who 7420 --netns all: want one section of ours, for %s, naming pid %d:\n%s", names[20], pid, out)
	}
	if code, out, _ := run(t, "", "who", "7420", "--netns", names[21]); code != 0 || !strings.HasPrefix(out, "nothing holds port 7420 in the namespace") {
		t.Errorf("who 7420 --netns %s: exit %d\n%s", names[21], code, out)
	}
}

// whyAndPortsInNamespace: why predicts inside the named namespace (the
// port is taken there, and only there); ports reads its own sysctls.
func whyAndPortsInNamespace(t *testing.T, names []string) {
	// why predicts inside the named namespace: the port is taken there,
	// and only there.
	if code, out, _ := run(t, "", "why", "bind", "127.0.0.1:7420", "--netns", names[20]); code != 1 || !strings.Contains(out, "EADDRINUSE") {
		t.Errorf("why bind 127.0.0.1:7420 --netns %s: exit %d, want 1 with EADDRINUSE:\n%s", names[20], code, out)
	}
	if code, out, _ := run(t, "", "why", "bind", "127.0.0.1:7420", "--netns", names[21]); code != 0 {
		t.Errorf("why bind 127.0.0.1:7420 --netns %s: exit %d, want 0:\n%s", names[21], code, out)
	}
	// ports reads the namespace's own sysctls.
	ns := &netnstest.NS{Name: names[3]}
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "41000 41009")
	if code, out, errOut := run(t, "", "ports", "--netns", names[3]); code != 0 || !strings.Contains(out, "Ephemeral range   41000-41009 (10 ports)") ||
		!strings.HasPrefix(out, "netns "+names[3]) {
		t.Errorf("ports --netns %s: exit %d, want its own range 41000-41009:\n%s%s", names[3], code, out, errOut)
	}
}

// netnsBadInput: a bad --netns is one line, exit 2.
func netnsBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"ls", "--netns", "no-such-namespace-here"},
		{"who", "80", "--netns", "-3"},
		{"why", "bind", "127.0.0.1:80", "--netns", "all"},
		{"ports", "--netns", "/etc/hostname"},
	} {
		code, _, errOut := run(t, "", args...)
		if code != 2 && !(args[0] == "ports" && code == 1) {
			t.Errorf("tuple %v: exit %d, want 2: %s", args, code, errOut)
		}
		if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("tuple %v: want one error line, got %q", args, errOut)
		}
	}
}
