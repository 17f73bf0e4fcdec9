// Command holder opens and holds N established loopback TCP connections:
// it listens on 127.0.0.1:PORT, connects N clients to itself and accepts
// them, so one process holds 2N+1 sockets. It prints "ready N" when all are
// established and holds them until its standard input closes or it is
// killed. With -churn R it also closes R connections a second (both ends,
// oldest first) and opens a new one for each, so N stay open while
// connections keep opening and closing (scripts/soak-exporter). Scripts run
// several holders (the per-process open-file limit is 20,000 here) inside a
// throwaway network namespace.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	port := flag.Int("port", 20000, "listening port on 127.0.0.1")
	n := flag.Int("n", 1000, "connections to hold")
	churn := flag.Int("churn", 0, "connections to close and reopen per second once all are open")
	flag.Parse()
	if err := hold(*port, *n, *churn); err != nil {
		fmt.Fprintln(os.Stderr, "holder:", err)
		os.Exit(1)
	}
}

// holder keeps the accepted ends by the client's port, to close both ends.
type holder struct {
	mu       sync.Mutex
	accepted map[int]net.Conn
	arrived  chan struct{} // one token per accepted connection
}

func (h *holder) acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		h.accepted[c.RemoteAddr().(*net.TCPAddr).Port] = c
		h.mu.Unlock()
		h.arrived <- struct{}{}
	}
}

func hold(port, n, churn int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// Keepalive off: at 100,000 connections the default 15 s probes
	// overflow loopback's backlog and the kernel aborts connections in the
	// middle of a benchmark.
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp4", addr)
	if err != nil {
		return err
	}
	h := &holder{accepted: make(map[int]net.Conn, n), arrived: make(chan struct{}, n+1)}
	go h.acceptLoop(ln)
	clients := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := (&net.Dialer{KeepAlive: -1}).Dial("tcp4", addr)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		clients = append(clients, c)
		<-h.arrived
	}
	fmt.Println("ready", n)
	done, stopped := make(chan struct{}), make(chan struct{})
	var cycled atomic.Int64
	if churn <= 0 {
		close(stopped)
	} else {
		go func() {
			defer close(stopped)
			tick := time.NewTicker(time.Second / time.Duration(churn))
			defer tick.Stop()
			for i := 0; ; i = (i + 1) % len(clients) {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				old := clients[i]
				p := old.LocalAddr().(*net.TCPAddr).Port
				old.Close()
				h.mu.Lock()
				if a := h.accepted[p]; a != nil {
					a.Close()
					delete(h.accepted, p)
				}
				h.mu.Unlock()
				c, err := net.Dial("tcp4", addr)
				if err != nil {
					fmt.Fprintln(os.Stderr, "holder: churn:", err)
					continue
				}
				clients[i] = c
				<-h.arrived
				cycled.Add(1)
			}
		}()
	}
	// Hold until stdin closes; a read error ends the hold the same way.
	_, _ = io.Copy(io.Discard, os.Stdin)
	close(done)
	<-stopped
	fmt.Println("cycled", cycled.Load())
	ln.Close()
	for _, c := range clients {
		c.Close()
	}
	h.mu.Lock()
	for _, c := range h.accepted {
		c.Close()
	}
	h.mu.Unlock()
	return nil
}
