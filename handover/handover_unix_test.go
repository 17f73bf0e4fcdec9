//go:build unix

package handover

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// server answers every connection on its listeners with one byte, its
// generation, until stopped.
type server struct {
	gen  byte
	lns  []net.Listener
	wg   sync.WaitGroup
	seen atomic.Int64
}

func start(gen byte, lns []net.Listener) *server {
	s := &server{gen: gen, lns: lns}
	for _, l := range lns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				s.seen.Add(1)
				c.Write([]byte{s.gen})
				c.Close()
			}
		}()
	}
	return s
}

// stop closes the listeners: the accept loops end.
func (s *server) stop() {
	for _, l := range s.lns {
		l.Close()
	}
	s.wg.Wait()
}

// TestHandoverUnderLoad hands two listening sockets from generation to
// generation 20 times while clients connect without pause: no connection
// may fail, and each generation stops accepting once its successor is ready.
func TestHandoverUnderLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handover.sock")
	if _, err := Take(context.Background(), path); !errors.Is(err, ErrNoOffer) {
		t.Fatalf("Take with nobody offering: %v, want ErrNoOffer", err)
	}
	var lns []net.Listener
	for i := 0; i < 2; i++ {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, l)
	}
	addrs := []string{lns[0].Addr().String(), lns[1].Addr().String()}

	stopLoad := make(chan struct{})
	var (
		mu       sync.Mutex
		failures []error
		total    atomic.Int64
		lwg      sync.WaitGroup
	)
	for c := 0; c < 4; c++ {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			for i := 0; ; i++ {
				select {
				case <-stopLoad:
					return
				default:
				}
				err := func() error {
					conn, err := net.DialTimeout("tcp4", addrs[i%2], 2*time.Second)
					if err != nil {
						return err
					}
					defer conn.Close()
					conn.SetDeadline(time.Now().Add(2 * time.Second))
					var b [1]byte
					_, err = io.ReadFull(conn, b[:])
					return err
				}()
				total.Add(1)
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
			}
		}()
	}

	ctx := context.Background()
	cur := start(0, lns)
	const generations = 20
	for gen := byte(1); gen <= generations; gen++ {
		offer, err := Listen(path)
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		old := cur
		go func() { served <- offer.Serve(ctx, old.lns, old.stop) }()
		time.Sleep(20 * time.Millisecond) // let the old generation serve a while
		tk, err := Take(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		cur = start(gen, tk.Listeners)
		if err := tk.Ready(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-served; err != nil {
			t.Fatal(err)
		}
		before := old.seen.Load()
		time.Sleep(5 * time.Millisecond)
		if after := old.seen.Load(); after != before {
			t.Errorf("generation %d accepted %d connections after handing over", gen-1, after-before)
		}
		if old.seen.Load() == 0 {
			t.Errorf("generation %d served nothing", gen-1)
		}
	}
	time.Sleep(20 * time.Millisecond)
	close(stopLoad)
	lwg.Wait()
	cur.stop()
	if len(failures) > 0 {
		t.Fatalf("%d of %d connections failed across %d hand-overs, first: %v", len(failures), total.Load(), generations, failures[0])
	}
	t.Logf("%d connections, %d hand-overs, no failure", total.Load(), generations)
}

// TestListenRefusesLiveOffer: a second Listen on a path where a process
// still offers fails instead of stealing the path.
func TestListenRefusesLiveOffer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.sock")
	o, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o2, err := Listen(path); err == nil {
		o2.Close()
		t.Fatal("second Listen on a live offer succeeded")
	}
}
