//go:build !linux

package socktab

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestSnapshotNotSupported(t *testing.T) {
	_, err := Snapshot(context.Background(), Query{})
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), runtime.GOOS) {
		t.Errorf("Snapshot on %s: %v, want an error wrapping ErrNotSupported naming the OS", runtime.GOOS, err)
	}
}
