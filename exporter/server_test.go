package exporter

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Idle keep-alive connections beyond MaxConns never keep a scrape out: the
// longest-idle one is closed to make room.
func TestServerIdleConnsDoNotBlockScrapes(t *testing.T) {
	h, err := Handler(New(staticSource(fixture(1)), Options{}))
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, ServerOptions{MaxConns: 8, IdleTimeout: time.Minute})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Shutdown(context.Background())
		<-served
	}()
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 20 { // each makes one request and stays open
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatalf("scrape with 20 idle connections and MaxConns 8: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	client.CloseIdleConnections()
	if !strings.Contains(string(b), "tuple_ephemeral_ports ") {
		t.Errorf("scrape returned no metrics")
	}
	if n := srv.Conns(); n > 8 {
		t.Errorf("%d connections held, cap 8", n)
	}
}
