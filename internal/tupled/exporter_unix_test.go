//go:build unix

package tupled

import (
	"syscall"
	"testing"
	"time"
)

// tuple exporter, run by tupled, stops cleanly on SIGTERM: exit 0.
func TestExporterStopsOnSIGTERM(t *testing.T) {
	addr, code := runExporterCmd(t)
	fetch(t, "http://"+addr+"/metrics")
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exporter after SIGTERM: exit %d, want 0", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exporter still running 10s after SIGTERM")
	}
}
