// Command holder opens and holds N established loopback TCP connections:
// it listens on 127.0.0.1:PORT, connects N clients to itself and accepts
// them, so one process holds 2N+1 sockets. It prints "ready N" when all are
// established and holds them until its standard input closes or it is
// killed. scripts/bench-ls runs several of them (the per-process open-file
// limit is 20,000 here) inside a throwaway network namespace.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
)

func main() {
	port := flag.Int("port", 20000, "listening port on 127.0.0.1")
	n := flag.Int("n", 1000, "connections to hold")
	flag.Parse()
	if err := hold(*port, *n); err != nil {
		fmt.Fprintln(os.Stderr, "holder:", err)
		os.Exit(1)
	}
}

func hold(port, n int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// Keepalive off: at 100,000 connections the default 15 s probes
	// overflow loopback's backlog and the kernel aborts connections in the
	// middle of a benchmark.
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp4", addr)
	if err != nil {
		return err
	}
	accepted := make(chan error, 1)
	conns := make([]net.Conn, 0, 2*n)
	var acc []net.Conn
	go func() {
		for i := 0; i < n; i++ {
			c, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			acc = append(acc, c)
		}
		accepted <- nil
	}()
	for i := 0; i < n; i++ {
		c, err := (&net.Dialer{KeepAlive: -1}).Dial("tcp4", addr)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	if err := <-accepted; err != nil {
		return err
	}
	conns = append(conns, acc...)
	fmt.Println("ready", n)
	io.Copy(io.Discard, os.Stdin) // hold until stdin closes
	for _, c := range conns {
		c.Close()
	}
	return ln.Close()
}
