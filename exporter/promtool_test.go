package exporter

import (
	"bytes"
	"github.com/tuple-net/tuple/internal/testenv"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
)

// requirePromtool returns promtool's path or skips: Debian's prometheus
// package ships it and CI installs it.
func requirePromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Missing(t, "promtool not installed (apt-get install prometheus)")
	}
	return p
}

// scrape serves e over HTTP on loopback and returns one scrape's body.
func scrape(t *testing.T, e *Exporter) []byte {
	t.Helper()
	h, err := Handler(e)
	if err != nil {
		t.Fatal(err)
	}
	return scrapeHandler(t, h)
}

// scrapeHandler serves h over HTTP on loopback and returns one scrape's body.
func scrapeHandler(t *testing.T, h http.Handler) []byte {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer srv.Client().CloseIdleConnections()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return body
}

// TestPromtoolCheckMetrics lints the exporter's real HTTP output, from the
// live socket table of this process's namespace and from a fixture that
// fills every family, with `promtool check metrics`.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := requirePromtool(t)
	live := LiveSource("", false, true)
	defer live.Close()
	for name, src := range map[string]Source{
		"live":    live,
		"fixture": staticSource(fixture(30)),
	} {
		t.Run(name, func(t *testing.T) {
			body := scrape(t, New(src, Options{Top: 5}))
			if !bytes.Contains(body, []byte("tuple_scrape_collector_success")) {
				t.Fatalf("scrape lacks tuple metrics:\n%s", body)
			}
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = bytes.NewReader(body)
			out, err := cmd.CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) != 0 {
				t.Errorf("promtool check metrics: %v\n%s", err, out)
			}
		})
	}
}
