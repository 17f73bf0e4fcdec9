package cli

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExporterBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"exporter", "--listen", "nonsense"},
		{"exporter", "--listen", "127.0.0.1:http-alt-x"},
		{"exporter", "--top", "0"},
		{"exporter", "--hog-share", "0"},
	} {
		code, _, errOut := run(t, "", args...)
		if code != 2 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("tuple %v: exit %d, stderr %q; want 2 and one line", args, code, errOut)
		}
	}
}

func TestExporterPortInUseExits1(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = runExporter(context.Background(), ExporterOptions{Listen: ln.Addr().String(), Top: 10, HogShare: 50, Timeout: time.Second},
		Streams{Out: io.Discard, Err: io.Discard})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("listen on a busy port: %v, want EADDRINUSE", err)
	}
	code, _, errOut := run(t, "", "exporter", "--listen", ln.Addr().String())
	// As tuple listen reports it: the errno in words and by name, then a
	// hint (TestExporterListenInUse has its words, which depend on what
	// this user may read of the holder).
	want := "tuple: listen tcp " + ln.Addr().String() + ": bind: address already in use (EADDRINUSE)"
	lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
	if code != 1 || len(lines) != 2 || lines[0] != want || !strings.HasPrefix(lines[1], "hint: ") {
		t.Errorf("tuple exporter on a busy port: exit %d, stderr %q, want the line %q and a hint", code, errOut, want)
	}
}
