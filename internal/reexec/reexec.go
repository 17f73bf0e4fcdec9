// Package reexec runs parts of a program as helper processes started from
// its own binary: tuple load's workers and tuple lab's per-uid helpers.
//
// A helper is registered by name (in an init function), started with
// Command, and dispatched in the child by Main, which the program's main
// (and each test binary's TestMain) calls first. The child is recognised
// by an environment marker that also carries the parent's pid, not by its
// arguments alone, so a user typing the helper's name gets no helper. The
// helper's name is still argv[1], so ps shows what each process is.
package reexec

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// envMarker is the environment variable naming the helper to run and the
// pid of the process that started it: "NAME:PID".
const envMarker = "TUPLE_REEXEC"

var (
	mu      sync.Mutex
	helpers = map[string]func(args []string) int{}
	parent  int // the starting process's pid, in a helper
)

// Register records main as the helper called name. main gets the
// arguments given to Command and returns the process's exit code.
// Registering a name twice panics: it is a programming error.
func Register(name string, main func(args []string) int) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := helpers[name]; dup {
		panic("reexec: helper " + name + " registered twice")
	}
	helpers[name] = main
}

// Main runs the helper this process was started as, and exits with its
// code; in a process not started by Command it returns at once. A marker
// naming no registered helper exits 2 with a message.
func Main() {
	v, ok := os.LookupEnv(envMarker)
	if !ok {
		return
	}
	// The helper's own children are not helpers.
	_ = os.Unsetenv(envMarker) // fails only for a malformed name, and envMarker is a constant
	name, pid, _ := strings.Cut(v, ":")
	parent, _ = strconv.Atoi(pid)
	mu.Lock()
	fn := helpers[name]
	mu.Unlock()
	if fn == nil || len(os.Args) < 2 || os.Args[1] != name {
		fmt.Fprintf(os.Stderr, "%s: started as helper %q, which this binary does not have\n", os.Args[0], name)
		os.Exit(2)
	}
	os.Exit(fn(os.Args[2:]))
}

// Parent is the pid of the process that started this helper, 0 when this
// process is not a helper.
func Parent() int { return parent }

// Command returns a command that runs the registered helper name with
// args from the running binary. On Linux the helper is killed when the
// starting thread's process ends (PR_SET_PDEATHSIG), so an interrupted or
// killed parent leaves no helper. The caller adds pipes, ExtraFiles and
// further SysProcAttr fields, then starts it.
func Command(name string, args ...string) (*exec.Cmd, error) {
	mu.Lock()
	_, ok := helpers[name]
	mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("reexec: no helper %q registered", name)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("reexec: find own binary to start helper %s: %w", name, err)
	}
	cmd := exec.Command(self, append([]string{name}, args...)...)
	cmd.Env = append(os.Environ(), envMarker+"="+name+":"+strconv.Itoa(os.Getpid()))
	cmd.SysProcAttr = procAttr()
	return cmd, nil
}

// ErrParentGone is returned by StayTied when the starting process has
// already ended.
var ErrParentGone = errors.New("the process that started this helper has exited")
