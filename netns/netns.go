package netns

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNotNetNamespace is the error of a path given as a network namespace
// that opens something else (a regular file, a mount namespace): bad
// input, unlike a namespace that cannot be read.
var ErrNotNetNamespace = errors.New("not a network namespace")

// Namespace is one network namespace of the host.
type Namespace struct {
	// Inode identifies the namespace (as `ls -i /proc/PID/ns/net` and
	// `ip netns identify` do); stable while it lives.
	Inode uint64 `json:"inode"`
	// Name is its name under /run/netns, "" when it has none.
	Name string `json:"name,omitempty"`
	// Host is true for the namespace of process 1 (false for all when
	// process 1's namespace cannot be read, as in some sandboxes).
	Host bool `json:"host,omitempty"`
	// Path opens the namespace: /run/netns/NAME or /proc/PID/ns/net.
	Path string `json:"path"`
	// PIDs are the processes in it, ascending (none for a named namespace
	// no process has entered).
	PIDs []int `json:"pids,omitempty"`
	// Container is what its processes' cgroups agree on: a field is set
	// only when every process that names one names the same (a pod's
	// containers share the pod UID but not the container id).
	Container
}

// Label is the short name people know the namespace by: its name, the
// pod, the container, or its inode.
func (n Namespace) Label() string {
	switch {
	case n.Name != "":
		return n.Name
	case n.Host:
		return "host"
	case n.PodUID != "":
		return "pod:" + n.PodUID
	case n.ID != "":
		return "container:" + n.ID[:12]
	}
	return "netns:" + strconv.FormatUint(n.Inode, 10)
}

// Spec selects namespaces: "all", a name under /run/netns, a PID, or a
// path to a namespace file. ParseSpec checks its form only.
type Spec struct {
	All  bool
	Name string
	PID  int
	Path string
}

// ParseSpec reads the --netns argument.
func ParseSpec(s string) (Spec, error) {
	switch {
	case s == "":
		return Spec{}, fmt.Errorf("empty namespace: want all, a name under /run/netns, a PID or a path")
	case s == "all":
		return Spec{All: true}, nil
	case strings.Contains(s, "/"):
		return Spec{Path: filepath.Clean(s)}, nil
	}
	if s[0] >= '0' && s[0] <= '9' {
		pid, err := strconv.Atoi(s)
		if err != nil || pid <= 0 {
			return Spec{}, fmt.Errorf("namespace %q: a PID is a positive number", s)
		}
		return Spec{PID: pid}, nil
	}
	if s == "." || s == ".." || s[0] == '-' || len(s) > 255 {
		return Spec{}, fmt.Errorf("namespace %q: not a valid name", s)
	}
	return Spec{Name: s}, nil
}

// StartHere is GoHere returning only once fn has started on its thread, or
// could not: a caller that went straight on with other work could keep
// fn's goroutine waiting for a processor, and fn is usually the longest
// part of the work. wait reports whether fn ran, and fn's error or, when
// it did not run, why.
func StartHere(fn func() error) (wait func() (ran bool, err error)) {
	started := make(chan struct{}) // closed when fn starts
	done := make(chan struct{})    // closed when err is set
	var err error
	w := GoHere(func() error {
		close(started)
		return fn()
	})
	go func() {
		err = w()
		close(done)
	}()
	select {
	case <-started:
	case <-done: // it could not start
	}
	return func() (bool, error) {
		<-done
		select {
		case <-started:
			return true, err
		default:
			return false, err
		}
	}
}
