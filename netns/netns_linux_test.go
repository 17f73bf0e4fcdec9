package netns_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/netnstest"
	. "github.com/tuple-net/tuple/netns"
)

// inode is the inode of a namespace file (the namespace's identity).
func inode(path string) (uint64, error) {
	var st unix.Stat_t
	err := unix.Stat(path, &st)
	return st.Ino, err
}

func threadInode(t *testing.T) uint64 {
	t.Helper()
	ino, err := inode("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

func TestListFindsNamedAndProcessNamespaces(t *testing.T) {
	a, b := netnstest.New(t), netnstest.New(t)
	// A process inside b: its namespace is found through /proc too.
	ctx, cancel := context.WithCancel(context.Background())
	cmd := b.Command(ctx, "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	// ip netns exec forks the command; wait for sleep to be in b.
	bIno, err := inode("/run/netns/" + b.Name)
	if err != nil {
		t.Fatal(err)
	}
	var sleepPID int
	deadline := time.Now().Add(5 * time.Second)
	for sleepPID == 0 && time.Now().Before(deadline) {
		if ino, err := inode("/proc/" + itoa(cmd.Process.Pid) + "/ns/net"); err == nil && ino == bIno {
			sleepPID = cmd.Process.Pid
		} else {
			time.Sleep(10 * time.Millisecond) // polling a state with no event to wait on
		}
	}
	if sleepPID == 0 {
		t.Fatal("the process never entered the namespace")
	}

	all, err := List("/proc", RunDir)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Namespace{}
	var host Namespace
	seen := map[uint64]bool{}
	for _, ns := range all {
		if seen[ns.Inode] {
			t.Errorf("inode %d listed twice", ns.Inode)
		}
		seen[ns.Inode] = true
		if ns.Name != "" {
			byName[ns.Name] = ns
		}
		if ns.Host {
			host = ns
		}
	}
	if _, err := inode("/proc/1/ns/net"); err == nil {
		if !slices.Contains(host.PIDs, 1) || host.Label() != "host" {
			t.Errorf("host namespace = %+v, want one holding pid 1 labelled host", host)
		}
	} else if host.Inode != 0 {
		t.Errorf("pid 1's namespace is unreadable (%v), yet %+v is marked host", err, host)
	}
	self := threadInode(t)
	if !seen[self] {
		t.Errorf("this process's own namespace %d is not listed", self)
	}
	if got := byName[a.Name]; got.Inode == 0 || len(got.PIDs) != 0 || got.Path != "/run/netns/"+a.Name || got.Label() != a.Name {
		t.Errorf("namespace %s = %+v, want it named, with no process", a.Name, got)
	}
	if got := byName[b.Name]; got.Inode != bIno || !slices.Contains(got.PIDs, sleepPID) {
		t.Errorf("namespace %s = %+v, want inode %d holding pid %d", b.Name, got, bIno, sleepPID)
	}

	// Resolve by name, PID and path all find b.
	for _, spec := range []Spec{{Name: b.Name}, {PID: sleepPID}, {Path: "/run/netns/" + b.Name}} {
		got, err := Resolve(spec, "/proc", RunDir)
		if err != nil || len(got) != 1 || got[0].Inode != bIno {
			t.Errorf("Resolve(%+v) = %+v, %v; want namespace inode %d", spec, got, err, bIno)
		}
	}
	if _, err := Resolve(Spec{Name: "no-such-namespace-here"}, "/proc", RunDir); err == nil {
		t.Error("Resolve of a missing name: no error")
	}
	if _, err := Resolve(Spec{Path: "/etc/hostname"}, "/proc", RunDir); err == nil {
		t.Error("Resolve of a file that is no namespace: no error")
	}
}

func TestDoEntersAndLeaves(t *testing.T) {
	ns := netnstest.New(t)
	want, err := inode("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	before := threadInode(t)
	var inside uint64
	var fd int
	if err := Do("/run/netns/"+ns.Name, func() error {
		inside = threadInode(t)
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if inside != want {
		t.Errorf("inside Do the thread was in namespace %d, want %d", inside, want)
	}
	// The socket belongs to the namespace: its loopback address is there
	// (bind succeeds) while the thread is back home.
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Errorf("bind in the namespace: %v", err)
	}
	if after := threadInode(t); after != before {
		t.Errorf("after Do this thread is in namespace %d, was %d", after, before)
	}
	if err := Do("/nonexistent/ns", func() error { return nil }); err == nil {
		t.Error("Do with a missing namespace: no error")
	}
}

// GoHere's thread is in the caller's namespace, not the process's: a
// thread inside Do can start work beside itself in the namespace it scans.
func TestGoHereRunsInTheCallersNamespace(t *testing.T) {
	ns := netnstest.New(t)
	want, err := inode("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	var beside uint64
	if err := Do("/run/netns/"+ns.Name, func() error {
		return GoHere(func() (err error) {
			beside, err = inode("/proc/thread-self/ns/net")
			return err
		})()
	}); err != nil {
		t.Fatal(err)
	}
	if beside != want {
		t.Errorf("GoHere inside Do ran in namespace %d, want the caller's %d", beside, want)
	}
	home := threadInode(t)
	failed := errors.New("fn failed")
	err = GoHere(func() (err error) {
		beside, err = inode("/proc/thread-self/ns/net")
		return errors.Join(err, failed)
	})()
	if !errors.Is(err, failed) {
		t.Errorf("GoHere's wait returned %v, want fn's error", err)
	}
	if beside != home {
		t.Errorf("GoHere from the process's namespace ran in namespace %d, want %d", beside, home)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// Fresh's thread is in a namespace of its own: a port held here is free
// there. The caller's namespace is where it was afterwards.
func TestFreshIsANewNamespace(t *testing.T) {
	netnstest.RequireRoot(t)
	home, err := inode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	here, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(here)
	if err := unix.Bind(here, &unix.SockaddrInet4{}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(here)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrInet4).Port
	var inside uint64
	var bindErr error
	if err := Fresh(func() error {
		inside = threadInode(t)
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		bindErr = unix.Bind(fd, &unix.SockaddrInet4{Port: port})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inside == home || inside == 0 {
		t.Errorf("inside Fresh the thread was in namespace %d, the process's is %d", inside, home)
	}
	if bindErr != nil {
		t.Errorf("bind of 0.0.0.0:%d, held in the process's namespace, inside Fresh: %v", port, bindErr)
	}
	if now, _ := inode("/proc/self/ns/net"); now != home {
		t.Errorf("the process's namespace changed: %d, was %d", now, home)
	}
}

// StartHere returns only once fn runs (here fn cannot end before the
// caller lets it), and its wait reports that fn ran, with fn's error.
func TestStartHereReturnsOnceStarted(t *testing.T) {
	// StartHere returns when fn's goroutine is about to call fn: with
	// two processors the caller may look before fn's first statement
	// ran (CI saw it once). With one, the goroutine that readies the
	// caller runs on until fn blocks, so a StartHere that returned before
	// that goroutine ran is still caught, and one that waited for it is
	// not blamed for the race.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var started atomic.Bool
	release := make(chan struct{})
	failed := errors.New("fn failed")
	wait := StartHere(func() error {
		started.Store(true)
		<-release
		return failed
	})
	if !started.Load() {
		t.Error("StartHere returned before fn started")
	}
	close(release)
	if ran, err := wait(); !ran || !errors.Is(err, failed) {
		t.Errorf("StartHere's wait: ran %v, err %v; want true and fn's error", ran, err)
	}
}
