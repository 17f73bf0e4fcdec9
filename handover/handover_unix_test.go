//go:build unix

package handover

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/unixsock"
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

	load := startLoad(addrs, 4)

	ctx := context.Background()
	cur := start(0, lns)
	const generations = 20
	for gen := byte(1); gen <= generations; gen++ {
		cur = handOver(t, ctx, path, gen, cur)
	}
	time.Sleep(20 * time.Millisecond)
	failures, total := load.end()
	cur.stop()
	if len(failures) > 0 {
		t.Fatalf("%d of %d connections failed across %d hand-overs, first: %v", len(failures), total, generations, failures[0])
	}
	t.Logf("%d connections, %d hand-overs, no failure", total, generations)
}

// handOver offers old's listeners at path, takes them as generation gen,
// and checks that old stopped accepting once gen was ready. It returns
// the new generation.
func handOver(t *testing.T, ctx context.Context, path string, gen byte, old *server) *server {
	t.Helper()
	offer, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- offer.Serve(ctx, old.lns, old.stop) }()
	// Let the old generation serve a while: some connection at least, so
	// its "served nothing" below means it could not, not that it was slow.
	for deadline := time.Now().Add(10 * time.Second); old.seen.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	tk, err := Take(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	cur := start(gen, tk.Listeners)
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
	return cur
}

// clientLoad is clients connecting without pause, each reading one byte.
type clientLoad struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	failures []error
	total    atomic.Int64
}

// startLoad starts n clients, each connecting to addrs in turn.
func startLoad(addrs []string, n int) *clientLoad {
	l := &clientLoad{stop: make(chan struct{})}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				err := connectOnce(addrs[i%len(addrs)])
				l.total.Add(1)
				if err != nil {
					l.mu.Lock()
					l.failures = append(l.failures, err)
					l.mu.Unlock()
				}
			}
		}()
	}
	return l
}

// end stops the clients and returns the failed connections and how many
// were tried.
func (l *clientLoad) end() ([]error, int64) {
	close(l.stop)
	l.wg.Wait()
	return l.failures, l.total.Load()
}

// connectOnce connects to addr and reads the byte the server sends.
func connectOnce(addr string) error {
	conn, err := net.DialTimeout("tcp4", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b [1]byte
	_, err = io.ReadFull(conn, b[:])
	return err
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

// TestListenKeepsWhatIsNotASocket: Listen on a path that holds a regular
// file or an empty directory fails, names what is there, and leaves it
// (it used to take them for a dead process's socket and remove them).
func TestListenKeepsWhatIsNotASocket(t *testing.T) {
	dir := t.TempDir()
	file, empty := filepath.Join(dir, "file"), filepath.Join(dir, "empty")
	if err := os.WriteFile(file, []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, what := range map[string]string{file: "a regular file", empty: "a directory"} {
		o, err := Listen(path)
		if err == nil {
			o.Close()
		}
		var nse *unixsock.NotSocketError
		if !errors.As(err, &nse) || !strings.Contains(err.Error(), path+" is "+what+", not a unix socket") {
			t.Errorf("Listen(%s): %v, want %q", path, err, path+" is "+what+", not a unix socket")
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me\n" {
		t.Errorf("the file after Listen: %q, %v", b, err)
	}
	if fi, err := os.Stat(empty); err != nil || !fi.IsDir() {
		t.Errorf("the directory after Listen: %v", err)
	}
}
