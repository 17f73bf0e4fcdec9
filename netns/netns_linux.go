package netns

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// RunDir is where `ip netns` keeps named namespaces.
const RunDir = "/run/netns"

// List finds every network namespace some process under procRoot is in,
// and every named one under runDir, deduplicated by inode, in inode order.
// Processes that vanish or whose namespace cannot be read (no
// CAP_SYS_PTRACE) are skipped; an unreadable procRoot is an error.
func List(procRoot, runDir string) ([]Namespace, error) {
	byInode := map[uint64]*Namespace{}
	pids, err := listPIDs(procRoot)
	if err != nil {
		return nil, err
	}
	var hostInode uint64
	for _, pid := range pids {
		nsPath := filepath.Join(procRoot, strconv.Itoa(pid), "ns", "net")
		ino, err := inode(nsPath)
		if err != nil {
			continue // gone, or not ours to read
		}
		if pid == 1 {
			hostInode = ino
		}
		ns := byInode[ino]
		if ns == nil {
			ns = &Namespace{Inode: ino, Path: nsPath}
			byInode[ino] = ns
		}
		ns.PIDs = append(ns.PIDs, pid)
	}
	if ents, err := os.ReadDir(runDir); err == nil {
		for _, e := range ents {
			p := filepath.Join(runDir, e.Name())
			ino, err := inode(p)
			if err != nil {
				continue // a stale mount point
			}
			ns := byInode[ino]
			if ns == nil {
				ns = &Namespace{Inode: ino}
				byInode[ino] = ns
			}
			if ns.Name == "" {
				ns.Name, ns.Path = e.Name(), p
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", runDir, err)
	}
	out := make([]Namespace, 0, len(byInode))
	for _, ns := range byInode {
		ns.Host = ns.Inode == hostInode && hostInode != 0
		slices.Sort(ns.PIDs)
		ns.Container = agree(procRoot, ns.PIDs)
		out = append(out, *ns)
	}
	slices.SortFunc(out, func(a, b Namespace) int { return cmpUint(a.Inode, b.Inode) })
	return out, nil
}

// Resolve returns the namespaces spec selects.
func Resolve(spec Spec, procRoot, runDir string) ([]Namespace, error) {
	if spec.All {
		return List(procRoot, runDir)
	}
	var path string
	switch {
	case spec.Name != "":
		path = filepath.Join(runDir, spec.Name)
	case spec.PID != 0:
		path = filepath.Join(procRoot, strconv.Itoa(spec.PID), "ns", "net")
	default:
		path = spec.Path
	}
	ino, err := netInode(path)
	if err != nil {
		return nil, err
	}
	all, err := List(procRoot, runDir)
	if err != nil {
		return nil, err
	}
	for _, ns := range all {
		if ns.Inode == ino {
			ns.Path = path
			return []Namespace{ns}, nil
		}
	}
	// A namespace file bind-mounted elsewhere that no process is in.
	return []Namespace{{Inode: ino, Path: path}}, nil
}

// inode is the inode of the namespace a path opens; the path must be a
// network namespace (nsfs).
func inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return 0, &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return 0, fmt.Errorf("%s: %w (not a namespace file)", path, ErrNotNetNamespace)
	}
	return st.Ino, nil
}

// netInode is inode for a path a user gave: a mount or user namespace's
// file is a namespace file too, and setns would refuse it later with a
// bare EINVAL. (The paths List walks, /proc/PID/ns/net, are network
// namespaces by name.)
func netInode(path string) (uint64, error) {
	ino, err := inode(path)
	if err != nil {
		return 0, err
	}
	if f, err := os.Open(path); err == nil {
		typ, terr := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
		f.Close()
		if terr == nil && typ != unix.CLONE_NEWNET {
			return 0, fmt.Errorf("%s: %w (a namespace of another kind)", path, ErrNotNetNamespace)
		}
	}
	return ino, nil
}

func listPIDs(procRoot string) ([]int, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", procRoot, err)
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// agree reads each process's cgroup and keeps what they all agree on.
func agree(procRoot string, pids []int) Container {
	var out Container
	conflict := [3]bool{}
	for _, pid := range pids {
		b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup"))
		if err != nil {
			continue
		}
		c := ParseCgroup(b)
		for i, pair := range [][2]*string{{&out.ID, &c.ID}, {&out.Runtime, &c.Runtime}, {&out.PodUID, &c.PodUID}} {
			have, got := pair[0], *pair[1]
			switch {
			case got == "" || conflict[i]:
			case *have == "":
				*have = got
			case *have != got:
				*have, conflict[i] = "", true
			}
		}
	}
	return out
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Do runs fn on an OS thread that has entered the namespace at path.
// Sockets fn opens belong to that namespace for their whole life, whichever
// thread uses them later. The thread is returned to the runtime only once
// it is back in its own namespace; if that fails it is retired.
func Do(path string, fn func() error) error {
	target, err := os.Open(path)
	if err != nil {
		return err
	}
	defer target.Close()
	return <-start(target, fn)
}

// GoHere runs fn on another OS thread in the calling thread's network
// namespace and returns a function that waits for fn's error: work beside
// the caller's own, where a plain go statement would run in whatever
// namespace the thread it lands on is in (a caller inside Do is not in the
// process's). The thread is given back as Do's is.
func GoHere(fn func() error) (wait func() error) {
	here, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return func() error { return err }
	}
	errc := start(here, fn)
	return func() error {
		err := <-errc
		here.Close()
		return err
	}
}

// Fresh runs fn on an OS thread in a new, empty network namespace of its
// own (unshare, which needs CAP_SYS_ADMIN): nothing is up there, and the
// namespace goes once fn's sockets are closed. The thread is given back as
// Do's is; ending it instead would kill the children other goroutines
// started from it with a parent-death signal.
func Fresh(fn func() error) error {
	return <-run(func() error { return os.NewSyscallError("unshare", unix.Unshare(unix.CLONE_NEWNET)) }, fn)
}

// WithOwnUDPTable runs fn as Fresh does, from a namespace whose children
// (a process started with CLONE_NEWNET, `ip netns add`) get a UDP hash
// table of their own, as large as the host's, instead of sharing the
// host's. In a shared table the kernel counts a port's slot over every
// namespace, and past ten sockets there bind() takes other paths: a
// namespace meant to show the kernel's rules alone (the lab's, a test's)
// must not have its answers moved by other namespaces' sockets. Kernels
// before 6.2 lack net.ipv4.udp_child_hash_entries: there fn runs as under
// Fresh, and its namespaces share the table.
func WithOwnUDPTable(fn func() error) error {
	return Fresh(func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/udp_hash_entries")
		if err == nil {
			// Negative in a namespace that shares the host's table.
			n, _ := strconv.Atoi(string(bytes.TrimSpace(b)))
			err = os.WriteFile("/proc/sys/net/ipv4/udp_child_hash_entries", []byte(strconv.Itoa(max(n, -n))), 0)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("a UDP hash table of their own for new namespaces: %w", err)
		}
		return fn()
	})
}

// start runs fn on a locked OS thread that has entered the namespace
// target is open on, and sends fn's error once the thread is back in its
// own namespace.
func start(target *os.File, fn func() error) <-chan error {
	return run(func() error {
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("entering namespace %s: %w", target.Name(), os.NewSyscallError("setns", err))
		}
		return nil
	}, fn)
}

// run runs fn on a locked OS thread that move (setns, unshare) has taken
// out of its namespace, and sends fn's error once the thread is back home:
// only then is it given back to the runtime. A thread that cannot go back
// stays locked, and the runtime ends it with the goroutine.
func run(move, fn func() error) <-chan error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer home.Close()
		if err := move(); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("going back to the thread's namespace: %w", os.NewSyscallError("setns", err))
			return // still locked: the runtime ends this thread
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return errc
}
