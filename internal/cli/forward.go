package cli

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// tupledName is the binary with the Services.
const tupledName = "tupled"

// forwardArgs are the arguments this process was started with, for
// forwardToTupled; Main sets them.
var forwardArgs []string

// forwardedEnv marks a process tuple handed a command to: a tupled without
// the Services (a tuple binary under that name) must not hand it on again,
// to itself, forever.
const forwardedEnv = "TUPLE_FORWARDED"

// forwardToTupled runs this command line in tupled, which has the Services
// this binary lacks (what names the command for the error). On Unix tupled
// replaces this process, so its pid, signals and exit code are the
// command's own; forwardToTupled returns only when that fails.
func forwardToTupled(s Streams, what string) error {
	self, _ := os.Executable() // "" when unknown: then only PATH is searched
	name := cmp.Or(self, "tuple")
	if from := os.Getenv(forwardedEnv); from != "" {
		return fmt.Errorf("%s: %s handed it to %s, which cannot run it either (a tuple binary named %s?)", what, from, name, tupledName)
	}
	path, err := findTupled(self)
	if err != nil {
		return fmt.Errorf("%s runs in %s, tuple with the Prometheus endpoints: %w; install both: go install github.com/tuple-net/tuple/cmd/...@latest", what, tupledName, err)
	}
	if err := os.Setenv(forwardedEnv, name); err != nil {
		return err
	}
	return runTupled(s, path, append([]string{path}, forwardArgs...))
}

// findTupled looks for tupled beside self, this binary (the path it was
// started by, then the file a symlink there names), where go install and
// packages put the two, then in PATH.
func findTupled(self string) (string, error) {
	var dirs []string
	if self != "" {
		dirs = append(dirs, filepath.Dir(self))
		if real, err := filepath.EvalSymlinks(self); err == nil && filepath.Dir(real) != dirs[0] {
			dirs = append(dirs, filepath.Dir(real))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, tupledName)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(tupledName)
	if errors.Is(err, exec.ErrNotFound) && self != "" {
		return "", fmt.Errorf("no %s beside %s or in PATH", tupledName, self)
	}
	if errors.Is(err, exec.ErrNotFound) {
		return "", fmt.Errorf("no %s in PATH", tupledName)
	}
	return p, err
}
