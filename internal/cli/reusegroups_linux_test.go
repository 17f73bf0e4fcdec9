package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/dial"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/reuseport"
)

// TestWhoShowsReuseportGroup: `tuple who PORT` on a map-steered group of 4
// shows the four members in index order with their process and descriptor,
// the sk_reuseport program by id, and the accept queue of the one member the
// supervisor left live (five connections nobody accepted).
func TestWhoShowsReuseportGroup(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t)
	sup, err := reuseport.NewSupervisor(4, reuseport.SupervisorOptions{})
	if errors.Is(err, inet.ErrUnsupported) {
		t.Skipf("kernel: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	var group []net.Listener
	var conns []net.Conn
	err = ns.Do(func() (err error) {
		group, err = dial.ListenGroup(context.Background(), "tcp4", "127.0.0.1:0", 4, dial.SteerMap(sup))
		if err != nil {
			return err
		}
		for _, i := range []int{0, 1, 3} {
			if err := sup.Drain(i); err != nil {
				return err
			}
		}
		for i := 0; i < 5; i++ {
			c, err := net.Dial("tcp4", group[0].Addr().String())
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		for _, l := range group {
			l.Close()
		}
	}()
	if err != nil {
		t.Fatal(err)
	}
	port := group[0].Addr().(*net.TCPAddr).Port
	progID, err := sup.ProgramID()
	if err != nil {
		t.Fatal(err)
	}
	backlog := strings.TrimSpace(ns.Run(t, "cat", "/proc/sys/net/core/somaxconn"))
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	who := startIn(t, ns, false, "tuple", "who", fmt.Sprint(port)).run(nil)
	if code := who.wait(20e9); code != 0 {
		t.Fatalf("who exited %d: %s", code, who.stderr.String())
	}
	out := who.stdout.String()
	m := regexp.MustCompile(`(?m)^reuseport group .*, id (\d+), program`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no group header with an id in:\n%s", out)
	}
	want := fmt.Sprintf("reuseport group tcp 127.0.0.1:%d uid=0: 4 member(s), id %s, program sk_reuseport id %d\n", port, m[1], progID)
	for i, l := range group {
		queue := 0
		if i == 2 {
			queue = 5
		}
		want += fmt.Sprintf("  index %d: %s(pid=%d,fd=%d) uid=0 accept-queue=%d/%s\n",
			i, strings.TrimSpace(string(comm)), os.Getpid(), listenerFD(t, l), queue, backlog)
	}
	// The section runs from its header to the notes, if any.
	section := ""
	if start := strings.Index(out, "reuseport group"); start >= 0 {
		section, _, _ = strings.Cut(out[start:], "note: ")
	}
	if section != want {
		t.Errorf("who %d: group section\n%s\nwant\n%s\nwhole output:\n%s", port, section, want, out)
	}
}

// listenerFD is l's descriptor number in this process.
func listenerFD(t *testing.T, l net.Listener) int {
	rc, err := l.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// TestWhoGroupUnknownWithoutRoot: run as uid 65534, who cannot load the
// iterator (nor read root's descriptors), so the group of four is formed
// from the table and its indices, id and program are stated as unknown
// with the reason.
func TestWhoGroupUnknownWithoutRoot(t *testing.T) {
	needTuple(t)
	ns := netnstest.New(t)
	var group []net.Listener
	err := ns.Do(func() (err error) {
		group, err = dial.ListenGroup(context.Background(), "tcp4", "127.0.0.1:0", 4)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, l := range group {
			l.Close()
		}
	}()
	port := group[0].Addr().(*net.TCPAddr).Port
	cmd := exec.Command(tupleBin, "who", fmt.Sprint(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	who := start(t, cmd, false).run(ns.Do)
	if code := who.wait(20 * time.Second); code != 0 {
		t.Fatalf("who exited %d: %s", code, who.stderr.String())
	}
	out := who.stdout.String()
	header := regexp.MustCompile(fmt.Sprintf(`(?m)^reuseport group tcp 127\.0\.0\.1:%d uid=0: 4 member\(s\); index, id and program unknown: .*BPF socket iterator not supported.*$`, port))
	if !header.MatchString(out) || strings.Count(out, "  index ?: no process uid=0 accept-queue=0/") != 4 {
		t.Errorf("who %d as uid 65534:\n%s\nwant the group header with the reason and four members of unknown index", port, out)
	}
}
