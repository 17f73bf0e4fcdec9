package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/leakcheck"
)

// A dial worker that runs out of descriptors stops there and says so:
// EMFILE by name, the limit in its result, and no stream of failed
// connects counted after it. The soft limit is lowered for this process
// (a worker's limit) and restored; the destination is a loopback listener
// that never accepts, so the handshakes complete in its queue without
// taking descriptors here.
func TestDialWorkerStopsAtFileLimit(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	low := uint64(leakcheck.OpenFDs() + 40)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: low, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	release := make(chan struct{})
	close(release)
	j := job{Policy: "kernel", To: []string{ln.Addr().String()}, Conns: 200, Timeout: 5 * time.Second,
		Concurrency: 4, StopAfter: 1000}
	err = runDialWorker(context.Background(), j, &msgWriter{enc: json.NewEncoder(&out)}, release)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); rerr != nil {
		t.Fatalf("restoring RLIMIT_NOFILE: %v", rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var res msg
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil || res.Type != "result" {
		t.Fatalf("last line %q: %v", lines[len(lines)-1], err)
	}
	if res.FileLimit != low {
		t.Errorf("result names file limit %d, want %d", res.FileLimit, low)
	}
	if res.AtLimit == 0 || res.AtLimit > res.Established {
		t.Errorf("held %d at the limit, %d at the end: want the count when EMFILE came", res.AtLimit, res.Established)
	}
	if res.Errors["EMFILE"] == 0 || len(res.Errors) != 1 {
		t.Errorf("errors %v, want only EMFILE", res.Errors)
	}
	if res.Established == 0 || res.Established+res.Failed > 100 {
		t.Errorf("established %d, failed %d of 200: want it to stop soon after the limit (%d descriptors)", res.Established, res.Failed, low)
	}
	fe := &FileLimitError{Worker: 2, Limit: low, Held: res.Established}
	if !errors.Is(fe, syscall.EMFILE) || !strings.Contains(fe.Error(), "RLIMIT_NOFILE") {
		t.Errorf("FileLimitError %q: want it to name RLIMIT_NOFILE and wrap EMFILE", fe)
	}
}
