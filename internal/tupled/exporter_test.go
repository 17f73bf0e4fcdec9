package tupled

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tuple-net/tuple/exporter"
	"github.com/tuple-net/tuple/internal/cli"
)

// exporterOptions are tuple exporter's defaults (for a test: a short timeout).
var exporterOptions = cli.ExporterOptions{Top: 10, HogShare: 50, Timeout: 5 * time.Second, MaxConns: 16, IdleTimeout: 30 * time.Second}

// startExporter serves src on a loopback port and returns its address and
// a channel with serveExporter's result.
func startExporter(t *testing.T, ctx context.Context, src exporter.Source) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serveExporter(ctx, ln, exporterOptions, src, io.Discard) }()
	return ln.Addr().String(), done
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
	if page := fetch(t, "http://"+addr+"/"); !strings.Contains(page, `<a href="/metrics">`) {
		t.Errorf("the landing page links no /metrics: %q", page)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("exporter after cancel: %v", err)
	}
}

// serving reads tuple exporter's "serving http://ADDR/metrics" line from
// its standard error.
var serving = regexp.MustCompile(`serving http://(\S+)/metrics`)

// runExporterCmd runs tuple exporter in this process with tupled's
// Services, on a loopback port from the kernel, and returns its address and
// exit code channel.
func runExporterCmd(t *testing.T, args ...string) (string, <-chan int) {
	t.Helper()
	cli.Provide(Services())
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- cli.Main(append([]string{"exporter", "--listen", "127.0.0.1:0", "--kernel-facts=false"}, args...), cli.Streams{In: strings.NewReader(""), Out: io.Discard, Err: pw})
		pw.Close()
	}()
	addr := make(chan string, 1)
	go func() {
		b := make([]byte, 4096)
		var seen []byte
		for {
			n, err := pr.Read(b)
			seen = append(seen, b[:n]...)
			if m := serving.FindSubmatch(seen); m != nil && len(addr) == 0 {
				addr <- string(m[1])
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case a := <-addr:
		return a, code
	case c := <-code:
		t.Fatalf("tuple exporter exited %d before serving", c)
	case <-time.After(10 * time.Second):
		t.Fatal("tuple exporter did not serve within 10s")
	}
	return "", nil
}
