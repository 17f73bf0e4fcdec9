//go:build !unix

package cli

import (
	"errors"
	"fmt"
	"os/exec"
)

// runTupled runs tupled as a child with this command's streams and exits
// with its code: this system cannot replace a process.
func runTupled(s Streams, path string, argv []string) error {
	cmd := exec.Command(path, argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.In, s.Out, s.Err
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exitCode(ee.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("running %s: %w", path, err)
	}
	return nil
}
