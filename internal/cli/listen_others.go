//go:build !linux

package cli

import "os/exec"

// startChild starts cmd; off Linux there is no pidfd to wait on, so the
// wait holds a thread per child.
func startChild(cmd *exec.Cmd) (wait func() error, err error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd.Wait, nil
}

// defaultMaxConns off Linux: the limits are not read; a conservative cap.
func defaultMaxConns(execMode bool) (int, string) {
	return 256, "limits not read on this OS"
}

// reservedFDs: descriptors kept for stdio, listeners and the runtime.
const reservedFDs = 64

// nofileLimit off Linux: not read; a common default.
func nofileLimit() int { return 1024 }
