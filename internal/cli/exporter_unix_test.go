//go:build unix

package cli

import (
	"context"
	"syscall"
	"testing"
	"time"
)

func TestExporterStopsOnSIGTERM(t *testing.T) {
	addr, done := startExporter(t, context.Background(), failingSource)
	fetch(t, "http://"+addr+"/metrics")
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exporter after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exporter still running 10s after SIGTERM")
	}
}
