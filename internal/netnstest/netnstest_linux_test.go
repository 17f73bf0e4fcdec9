package netnstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/netns"
)

func TestNamespaceIsolatesPorts(t *testing.T) {
	ns := New(t, "10.77.0.1/32")
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", "10.77.0.1:12345")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out := ns.Run(t, "ss", "-Htln")
	if !strings.Contains(out, "10.77.0.1:12345") {
		t.Errorf("listener not seen inside the namespace; ss says %q", out)
	}
	// The host has no such address, so the same bind fails there.
	if l, err := net.Listen("tcp", "10.77.0.1:12345"); err == nil {
		l.Close()
		t.Error("10.77.0.1 is bindable on the host: the namespace leaked")
	}
}

// A namespace a dead test process left behind is removed by the next
// process's first New; one of a live process (this one) is kept.
func TestNewSweepsDeadProcessesNamespaces(t *testing.T) {
	RequireRoot(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("%s%d-1", namePrefix, gone.Process.Pid)
	live := fmt.Sprintf("%s%d-999999", namePrefix, os.Getpid())
	for _, name := range []string{dead, live} {
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", name, err, out)
		}
	}
	t.Cleanup(func() {
		for _, name := range []string{dead, live} {
			exec.Command("ip", "netns", "del", name).Run()
		}
	})
	sweepDead()
	if _, err := os.Stat(netns.RunDir + "/" + dead); !os.IsNotExist(err) {
		t.Errorf("%s (its process %d has exited) not removed: %v", dead, gone.Process.Pid, err)
	}
	if _, err := os.Stat(netns.RunDir + "/" + live); err != nil {
		t.Errorf("%s (this process's) removed: %v", live, err)
	}
	for _, name := range []string{"tuple-test-x-1", "tuple-lab-1", "tuple-test-0-1"} {
		if deadCreator(name) {
			t.Errorf("%q taken for a test namespace of a dead process", name)
		}
	}
}
