//go:build !linux

package socktab

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/inet"
)

func TestSnapshotNotSupported(t *testing.T) {
	_, err := Snapshot(context.Background(), Query{})
	if !errors.Is(err, inet.ErrUnsupported) || !strings.Contains(err.Error(), runtime.GOOS) {
		t.Errorf("Snapshot on %s: %v, want an error wrapping inet.ErrUnsupported naming the OS", runtime.GOOS, err)
	}
}
