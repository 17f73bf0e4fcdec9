package reuseport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/dial"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/reuseport"
)

// member is one listener of a test group: every connection it accepts is
// answered with its index and closed.
type member struct {
	idx      int
	ln       net.Listener
	accepted atomic.Int64
	done     chan struct{}
	// onAccept, when set, sees each accepted connection before the answer.
	onAccept func(idx int, c net.Conn)
}

func serve(t *testing.T, idx int, ln net.Listener, onAccept func(int, net.Conn)) *member {
	m := &member{idx: idx, ln: ln, done: make(chan struct{}), onAccept: onAccept}
	go func() {
		defer close(m.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m.accepted.Add(1)
			if m.onAccept != nil {
				m.onAccept(idx, c)
			}
			c.Write([]byte{byte(idx)})
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-m.done })
	return m
}

// stop closes the member and waits for its accept loop to end.
func (m *member) stop() { m.ln.Close(); <-m.done }

// roundTrip connects to addr and reads the member's index; any failure
// (refused, reset, timeout, short read) is an error. The timeouts outlast
// two SYN retransmissions (1 s, then 2 s more), so a failure is a refusal
// or a reset, not a slow machine.
func roundTrip(addr string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return -1, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return -1, err
	}
	return int(b[0]), nil
}

// allowedCPUs is the CPUs this process may run on.
func allowedCPUs(t *testing.T) []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for i := 0; i < 1024; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

// TestSteerCPU: with cpu steering, every connection lands on the member
// whose index is the CPU that received it (SO_INCOMING_CPU of the accepted
// socket), and a client pinned to CPU k always reaches member k.
func TestSteerCPU(t *testing.T) {
	ns := netnstest.New(t)
	cpus := allowedCPUs(t)
	n := cpus[len(cpus)-1] + 1
	type landing struct{ member, incoming int }
	landed := make(chan landing, 64)
	onAccept := func(idx int, c net.Conn) {
		rc, _ := c.(*net.TCPConn).SyscallConn()
		cpu := -1
		rc.Control(func(fd uintptr) { cpu, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_INCOMING_CPU) })
		landed <- landing{idx, cpu}
	}
	var group []net.Listener
	err := ns.Do(func() (err error) {
		group, err = dial.ListenGroup(context.Background(), "tcp4", "127.0.0.1:0", n, dial.SteerCPU())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range group {
		serve(t, i, l, onAccept)
	}
	addr := group[0].Addr().String()
	const perCPU = 25
	err = ns.Do(func() error {
		var orig unix.CPUSet
		if err := unix.SchedGetaffinity(0, &orig); err != nil {
			return err
		}
		defer unix.SchedSetaffinity(0, &orig)
		for _, cpu := range cpus {
			var one unix.CPUSet
			one.Set(cpu)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				return fmt.Errorf("pin to CPU %d: %w", cpu, err)
			}
			for i := 0; i < perCPU; i++ {
				got, err := roundTrip(addr)
				if err != nil {
					return fmt.Errorf("connection %d from CPU %d: %w", i, cpu, err)
				}
				l := <-landed
				if l.member != got {
					return fmt.Errorf("member %d accepted, client read %d", l.member, got)
				}
				if l.incoming != l.member || l.member != cpu {
					t.Errorf("client on CPU %d: accepted by member %d, SO_INCOMING_CPU %d; want all equal", cpu, l.member, l.incoming)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d CPUs, %d connections each, every one on its CPU's member", len(cpus), perCPU)
}

// load runs clients against addr inside ns until stop is closed, counting
// answers per member and failures.
type load struct {
	mu       sync.Mutex
	perIdx   map[int]int
	failures []error
	total    atomic.Int64
}

func runLoad(t *testing.T, ns *netnstest.NS, addr string, clients int, stop <-chan struct{}) (*load, func()) {
	ld := &load{perIdx: map[int]int{}}
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := ns.Do(func() error {
				for {
					select {
					case <-stop:
						return nil
					default:
					}
					idx, err := roundTrip(addr)
					ld.total.Add(1)
					ld.mu.Lock()
					if err != nil {
						ld.failures = append(ld.failures, err)
					} else {
						ld.perIdx[idx]++
					}
					ld.mu.Unlock()
				}
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	return ld, wg.Wait
}

func (ld *load) snapshot() (map[int]int, []error) {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	per := map[int]int{}
	for k, v := range ld.perIdx {
		per[k] = v
	}
	return per, append([]error(nil), ld.failures...)
}

// newSupervisor skips t when the kernel refuses sk_reuseport programs.
func newSupervisor(t *testing.T, size int, o reuseport.SupervisorOptions) *reuseport.Supervisor {
	sup, err := reuseport.NewSupervisor(size, o)
	if errors.Is(err, inet.ErrUnsupported) {
		t.Skipf("kernel: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sup.Close() })
	return sup
}

// TestSteerMapDrainAndReplace: under load, a drained member stops getting
// connections, accepts what it queued and closes without a single client
// failing; a socket placed at its index then takes its share.
func TestSteerMapDrainAndPlace(t *testing.T) {
	ns := netnstest.New(t)
	sup := newSupervisor(t, 4, reuseport.SupervisorOptions{})
	var group []net.Listener
	err := ns.Do(func() (err error) {
		group, err = dial.ListenGroup(context.Background(), "tcp4", "127.0.0.1:0", 4, dial.SteerMap(sup))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	members := make([]*member, 4)
	for i, l := range group {
		members[i] = serve(t, i, l, nil)
	}
	addr := group[0].Addr().String()
	stop := make(chan struct{})
	ld, wait := runLoad(t, ns, addr, 4, stop)
	defer func() { close(stop); wait() }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("every member to serve", func() bool {
		per, _ := ld.snapshot()
		return len(per) == 4 && per[0] > 20 && per[1] > 20 && per[2] > 20 && per[3] > 20
	})
	if err := sup.Drain(2); err != nil {
		t.Fatal(err)
	}
	// What member 2 queued before the drain is accepted; then it closes.
	before := members[2].accepted.Load()
	time.Sleep(200 * time.Millisecond)
	mid := members[2].accepted.Load()
	time.Sleep(200 * time.Millisecond)
	if after := members[2].accepted.Load(); after != mid {
		t.Errorf("drained member 2 still accepts: %d then %d connections", mid, after)
	}
	members[2].stop()
	base := ld.total.Load()
	waitFor("500 connections after the drain", func() bool { return ld.total.Load() > base+500 })
	per, fails := ld.snapshot()
	if len(fails) > 0 {
		t.Fatalf("%d failed connections around the drain, first: %v", len(fails), fails[0])
	}
	t.Logf("member 2 accepted %d before the drain, %d after; spread %v", before, mid-before, per)

	// A new socket placed at index 2 takes index 2's share again.
	var repl net.Listener
	err = ns.Do(func() (err error) {
		l, err := dial.ListenGroup(context.Background(), "tcp4", addr, 1)
		repl = l[0]
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sup.Place(2, repl.(*net.TCPListener)); err != nil {
		t.Fatal(err)
	}
	nm := serve(t, 2, repl, nil)
	waitFor("the new member at index 2 to serve", func() bool { return nm.accepted.Load() > 20 })
	if _, fails := ld.snapshot(); len(fails) > 0 {
		t.Fatalf("%d failed connections, first: %v", len(fails), fails[0])
	}
	if got := sup.Live(); len(got) != 4 {
		t.Errorf("live indices %v, want 4", got)
	}
}

// TestSteerMapReplace: under load, Replace puts a new socket at a live
// index; the old one stops getting connections, serves what it queued and
// closes, and no client fails.
func TestSteerMapReplace(t *testing.T) {
	ns := netnstest.New(t)
	sup := newSupervisor(t, 2, reuseport.SupervisorOptions{})
	var group []net.Listener
	err := ns.Do(func() (err error) {
		group, err = dial.ListenGroup(context.Background(), "tcp4", "127.0.0.1:0", 2, dial.SteerMap(sup))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	old := serve(t, 1, group[1], nil)
	serve(t, 0, group[0], nil)
	addr := group[0].Addr().String()
	stop := make(chan struct{})
	ld, wait := runLoad(t, ns, addr, 4, stop)
	defer func() { close(stop); wait() }()
	for old.accepted.Load() < 50 {
		time.Sleep(10 * time.Millisecond)
	}
	var repl []net.Listener
	if err := ns.Do(func() (err error) {
		repl, err = dial.ListenGroup(context.Background(), "tcp4", addr, 1)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// The new socket answers as member 2, so the clients tell it apart.
	nm := serve(t, 2, repl[0], nil)
	if err := sup.Replace(1, repl[0].(*net.TCPListener)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	mid := old.accepted.Load()
	time.Sleep(200 * time.Millisecond)
	if after := old.accepted.Load(); after != mid {
		t.Errorf("replaced socket still accepts: %d then %d", mid, after)
	}
	old.stop()
	for base := nm.accepted.Load(); nm.accepted.Load() < base+100; {
		time.Sleep(10 * time.Millisecond)
	}
	per, fails := ld.snapshot()
	if len(fails) > 0 {
		t.Fatalf("%d failed connections around the replacement, first: %v", len(fails), fails[0])
	}
	t.Logf("spread %v (2: the replacement)", per)
}
