//go:build linux

package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/tuple-net/tuple/internal/kversion"
	"github.com/tuple-net/tuple/netns"
	"golang.org/x/sys/unix"
)

// TestCountsEverySocket: in a namespace of its own, the floor's count is
// every TCP socket there, of both families, bound-only ones included where
// the kernel lists them (6.8 on): what `tuple ls -ta` lists, so the two are
// timed over the same dump.
func TestCountsEverySocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it counts the sockets of a network namespace of its own")
	}
	err := netns.Fresh(func() error {
		if n, err := count(); err != nil || n != 0 {
			return fmt.Errorf("empty namespace: count() = %d, %v; want 0", n, err)
		}
		want := 0
		for _, s := range []struct {
			family int
			sa     unix.Sockaddr
			listen bool
		}{
			{unix.AF_INET, &unix.SockaddrInet4{}, true},
			{unix.AF_INET6, &unix.SockaddrInet6{}, true},
			{unix.AF_INET, &unix.SockaddrInet4{}, false},
			{unix.AF_INET6, &unix.SockaddrInet6{}, false},
		} {
			fd, err := unix.Socket(s.family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			if err := unix.Bind(fd, s.sa); err != nil {
				return err
			}
			if s.listen {
				if err := unix.Listen(fd, 1); err != nil {
					return err
				}
				want++
			} else if kversion.AtLeast(6, 8) {
				want++
			}
		}
		if n, err := count(); err != nil || n != want {
			return fmt.Errorf("count() = %d, %v; want %d", n, err, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
