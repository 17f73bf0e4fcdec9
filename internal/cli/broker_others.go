//go:build !unix

package cli

import (
	"fmt"
	"os/exec"
	"runtime"
)

func execve(path string, args, env []string) error {
	return fmt.Errorf("not supported on %s/%s", runtime.GOOS, runtime.GOARCH)
}

func signalNumber(ee *exec.ExitError) int { return 0 }
