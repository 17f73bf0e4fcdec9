package cli

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/exporter"
)

// startExporter runs runExporter on a loopback port with src and returns its
// address and a channel with runExporter's result.
func startExporter(t *testing.T, ctx context.Context, src exporter.Source) (string, <-chan error) {
	t.Helper()
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	o := exporterOptions{Listen: "127.0.0.1:0", Top: 10, HogShare: 50, Timeout: 5 * time.Second,
		source: src, ready: func(a net.Addr) { addrc <- a.String() }}
	go func() { done <- runExporter(ctx, o, Streams{Out: io.Discard, Err: io.Discard}) }()
	select {
	case a := <-addrc:
		return a, done
	case err := <-done:
		t.Fatalf("exporter did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("exporter did not start within 10s")
	}
	return "", nil
}

func fetch(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

var failingSource = exporter.SourceFunc(func(context.Context) exporter.Input {
	return exporter.Input{TableErr: syscall.EPERM}
})

func TestExporterServesAndStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := startExporter(t, ctx, failingSource)
	body := fetch(t, "http://"+addr+"/metrics")
	// The failed collector's line, and the process collector's (its value
	// varies).
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^tuple_scrape_collector_success\{collector="sockets"\} 0$`),
		regexp.MustCompile(`(?m)^process_resident_memory_bytes [0-9.e+]+$`),
	} {
		if !want.MatchString(body) {
			t.Errorf("/metrics has no line %s", want)
		}
	}
	golden(t, "exporter-landing.html", fetch(t, "http://"+addr+"/"))
	cancel()
	if err := <-done; err != nil {
		t.Errorf("exporter after cancel: %v", err)
	}
}

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
	err = runExporter(context.Background(), exporterOptions{Listen: ln.Addr().String(), Top: 10, HogShare: 50, Timeout: time.Second,
		source: failingSource}, Streams{Out: io.Discard, Err: io.Discard})
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
