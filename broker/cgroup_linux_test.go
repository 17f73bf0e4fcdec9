package broker

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// cgroup2Mount returns where the cgroup v2 hierarchy is mounted, or "".
func cgroup2Mount() string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 2 && fields[2] == "cgroup2" {
			return fields[1]
		}
	}
	return ""
}

// TestBrokerCgroups grants port 80 to uid 65534 only inside one cgroup: a
// process of that uid born in the cgroup gets it, the same uid outside is
// refused, with the reason naming both cgroups.
func TestBrokerCgroups(t *testing.T) {
	ns := netnstest.New(t)
	mnt := cgroup2Mount()
	if mnt == "" {
		t.Skip("no cgroup v2 hierarchy mounted")
	}
	name := fmt.Sprintf("tuple-broker-test-%d", os.Getpid())
	dir := filepath.Join(mnt, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot create a cgroup: %v", err)
	}
	// Registered first, so it runs after the processes have ended.
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("removing cgroup %s: %v", dir, err)
		}
	})
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	d := startBroker(t, ns, fmt.Sprintf(`
[[grant]]
uids = [65534]
cgroups = ["/%s"]
proto = "tcp"
address = "127.0.0.1"
ports = 80
`, name))
	_, helper := bins(t)
	env := []string{helperEnv + "=request"}

	inside := startInCgroup(t, ns, nobody, int(cg.Fd()), env, helper, d.sock, "tcp", "127.0.0.1:80")
	if got := inside.line(); got != "granted 127.0.0.1:80" {
		t.Errorf("uid %d in cgroup /%s: %s", nobody, name, got)
	}
	inside.stop()
	outside := start(t, ns, nobody, env, helper, d.sock, "tcp", "127.0.0.1:80")
	if got := outside.line(); !strings.HasPrefix(got, "denied") || !strings.Contains(got, "is not under /"+name) {
		t.Errorf("uid %d outside the cgroup: %s", nobody, got)
	}
}

// TestBrokerSocketFile checks that the policy's [socket] mode and group
// decide who may even ask: with mode 0660 and group 65533, a process of gid
// 65533 reaches the broker (and is refused by policy), uid 65534 cannot
// connect at all.
func TestBrokerSocketFile(t *testing.T) {
	ns := netnstest.New(t)
	d := startBroker(t, ns, `
[socket]
mode = "0660"
group = 65533
`)
	fi, err := os.Stat(d.sock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o660 || st.Gid != another {
		t.Errorf("socket file mode %v gid %d, want 0660 and gid %d", fi.Mode().Perm(), st.Gid, another)
	}
	_, helper := bins(t)
	env := []string{helperEnv + "=request"}
	member := start(t, ns, another, env, helper, d.sock, "tcp", "127.0.0.1:80")
	if got := member.line(); !strings.Contains(got, "no grant names uid 65533") {
		t.Errorf("gid %d: %s, want a policy refusal", another, got)
	}
	stranger := start(t, ns, nobody, env, helper, d.sock, "tcp", "127.0.0.1:80")
	if got := stranger.line(); !strings.Contains(got, "permission denied") {
		t.Errorf("uid %d: %s, want the socket file to refuse it", nobody, got)
	}
}
