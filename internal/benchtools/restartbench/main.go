// Command restartbench measures what restarting one member of a
// SO_REUSEPORT group costs the clients. It runs `tuple listen -k` servers
// (a member that stays and a member that is restarted over and over),
// opens connections at a steady rate (each: connect, send a line, half-close,
// read until the server closes) and counts the failed ones by kind:
// refused, reset, timeout, and lost (the client succeeded but no server
// printed its line). With -spread it instead counts how a steering mode
// spreads connections over members. scripts/bench-restart runs it inside a
// throwaway network namespace, once per method.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	tuple := flag.String("tuple", "tuple", "tuple binary")
	method := flag.String("method", "plain", "restart method: plain, sysctl (tcp_migrate_req=1 set by the caller), program (--migrate), handover")
	restarts := flag.Int("restarts", 100, "restarts of the member")
	every := flag.Duration("every", 100*time.Millisecond, "time between restarts")
	rate := flag.Int("rate", 1000, "new connections per second")
	port := flag.Int("port", 7000, "port on 127.0.0.1")
	spread := flag.String("spread", "", "instead of restarts: steering mode whose spread over members to count (hash, cpu, map)")
	members := flag.Int("members", 4, "members for -spread")
	conns := flag.Int("conns", 4000, "connections for -spread")
	dir := flag.String("dir", os.TempDir(), "directory for server output")
	flag.Parse()
	b := &bench{tuple: *tuple, addr: fmt.Sprintf("127.0.0.1:%d", *port), port: *port, dir: *dir}
	var err error
	if *spread != "" {
		err = b.spread(*spread, *members, *conns, *rate)
	} else {
		err = b.restart(*method, *restarts, *every, *rate)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "restartbench:", err)
		os.Exit(1)
	}
}

type bench struct {
	tuple string
	addr  string
	port  int
	dir   string
	seq   int
	outs  []string // server stdout files
}

// server is one tuple listen process.
type server struct {
	cmd    *exec.Cmd
	stderr *lineLog
	done   chan error
}

// lineLog collects a process's stderr lines.
type lineLog struct {
	mu    sync.Mutex
	lines []string
	added chan struct{}
}

func (l *lineLog) run(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l.mu.Lock()
		l.lines = append(l.lines, sc.Text())
		l.mu.Unlock()
		select {
		case l.added <- struct{}{}:
		default:
		}
	}
}

func (l *lineLog) find(re *regexp.Regexp) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.lines, re.MatchString)
}

func (b *bench) start(args ...string) (*server, error) {
	b.seq++
	out := filepath.Join(b.dir, fmt.Sprintf("server-%d.out", b.seq))
	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b.outs = append(b.outs, out)
	cmd := exec.Command(b.tuple, append([]string{"listen", "-k", "-v", "--reuseport"}, args...)...)
	cmd.Stdout = f
	errR, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, stderr: &lineLog{added: make(chan struct{}, 1)}, done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		s.stderr.run(errR)
		s.done <- cmd.Wait()
	}()
	if err := s.waitFor(regexp.MustCompile(`^listening on `), 10*time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *server) waitFor(re *regexp.Regexp, timeout time.Duration) error {
	deadline := time.After(timeout)
	for !s.stderr.find(re) {
		select {
		case <-s.stderr.added:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			return fmt.Errorf("%s: no %q within %v: %q", s.cmd.Args, re, timeout, s.stderr.lines)
		}
	}
	return nil
}

// stop sends SIGTERM (stop accepting, finish open connections) and waits.
func (s *server) stop() error {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop %s: %w", s.cmd.Args, err)
	}
	return s.wait()
}

func (s *server) wait() error {
	select {
	case err := <-s.done:
		return err
	case <-time.After(20 * time.Second):
		if err := s.cmd.Process.Kill(); err != nil {
			return fmt.Errorf("%s did not exit, and kill failed: %w", s.cmd.Args, err)
		}
		return fmt.Errorf("%s did not exit", s.cmd.Args)
	}
}

// tally counts client outcomes.
type tally struct {
	ok, refused, reset, timeout, other atomic.Int64
	mu                                 sync.Mutex
	sent                               []string
	firstOther                         error
}

func (t *tally) total() int64 {
	return t.ok.Load() + t.refused.Load() + t.reset.Load() + t.timeout.Load() + t.other.Load()
}

func (t *tally) record(line string, err error) {
	var ne net.Error
	switch {
	case err == nil:
		t.ok.Add(1)
		t.mu.Lock()
		t.sent = append(t.sent, line)
		t.mu.Unlock()
	case errors.Is(err, syscall.ECONNREFUSED):
		t.refused.Add(1)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ENOTCONN):
		// ENOTCONN: the half-close found the connection already reset.
		t.reset.Add(1)
	case errors.As(err, &ne) && ne.Timeout():
		t.timeout.Add(1)
	default:
		t.other.Add(1)
		t.mu.Lock()
		if t.firstOther == nil {
			t.firstOther = err
		}
		t.mu.Unlock()
	}
}

// clients opens rate connections per second until ctx ends, then waits
// for the open ones.
func (b *bench) clients(ctx context.Context, rate int, t *tally) {
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := fmt.Sprintf("conn %d", i)
			t.record(line, roundTrip(b.addr, line))
		}()
	}
}

// roundTrip: connect, send a line, half-close, read until the server
// closes. Every step must succeed within 3 seconds.
func roundTrip(addr, line string) error {
	c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, c)
	return err
}

func (b *bench) restart(method string, restarts int, every time.Duration, rate int) error {
	args, stayArgs, err := b.memberArgs(method)
	if err != nil {
		return err
	}
	stay, err := b.start(stayArgs...)
	if err != nil {
		return err
	}
	cur, err := b.start(args...)
	if err != nil {
		if serr := stay.stop(); serr != nil {
			return errors.Join(err, serr)
		}
		return err
	}
	var t tally
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loadDone := make(chan struct{})
	go func() { b.clients(ctx, rate, &t); close(loadDone) }()
	began := time.Now()
	for i := 0; i < restarts; i++ {
		time.Sleep(every)
		if cur, err = b.replace(method, cur, args); err != nil {
			return err
		}
	}
	time.Sleep(every)
	cancel()
	<-loadDone
	elapsed := time.Since(began)
	if err := errors.Join(cur.stop(), stay.stop()); err != nil {
		return err
	}
	lost, err := b.lost(&t)
	if err != nil {
		return err
	}
	t.print(method, restarts, lost, elapsed)
	return nil
}

// memberArgs are the tuple listen arguments of the member restarted by
// method, and of the member that stays: the group never empties, so only
// the restarted member's own connections are at stake.
func (b *bench) memberArgs(method string) (args, stayArgs []string, err error) {
	switch method {
	case "plain", "sysctl":
		args = []string{"--members", "1"}
	case "program":
		args = []string{"--migrate"}
	case "handover":
		args = []string{"--handover", filepath.Join(b.dir, "handover.sock")}
	default:
		return nil, nil, fmt.Errorf("method %q: want plain, sysctl, program or handover", method)
	}
	args = append(args, "127.0.0.1", fmt.Sprint(b.port))
	stayArgs = append([]string{"--members", "1"}, args[len(args)-2:]...)
	if method == "program" {
		stayArgs = args
	}
	return args, stayArgs, nil
}

var takenOver = regexp.MustCompile(`taken over from `)

// replace restarts member cur: with handover the new one takes the
// listeners over and the old one exits; otherwise the old one stops
// first. It returns the new member.
func (b *bench) replace(method string, cur *server, args []string) (*server, error) {
	if method != "handover" {
		if err := cur.stop(); err != nil {
			return nil, fmt.Errorf("member stop: %v", err)
		}
		return b.start(args...)
	}
	next, err := b.start(args...)
	if err != nil {
		return nil, err
	}
	if err := next.waitFor(takenOver, 10*time.Second); err != nil {
		return nil, err
	}
	if err := cur.wait(); err != nil {
		return nil, fmt.Errorf("old member after hand-over: %v", err)
	}
	return next, nil
}

// print writes one method's line of figures.
func (t *tally) print(method string, restarts, lost int, elapsed time.Duration) {
	total := t.total()
	failed := total - t.ok.Load() + int64(lost)
	fmt.Printf("%-9s restarts=%d connections=%d failed=%d per10k=%.1f refused=%d reset=%d timeout=%d other=%d lost=%d rate=%.0f/s\n",
		method, restarts, total, failed, 1e4*float64(failed)/float64(total),
		t.refused.Load(), t.reset.Load(), t.timeout.Load(), t.other.Load(), lost, float64(total)/elapsed.Seconds())
	if t.firstOther != nil {
		fmt.Printf("  first other failure: %v\n", t.firstOther)
	}
}

// lost counts lines clients sent successfully that no server printed.
func (b *bench) lost(t *tally) (int, error) {
	got := map[string]bool{}
	for _, out := range b.outs {
		data, err := os.ReadFile(out)
		if err != nil {
			return 0, err
		}
		for _, l := range strings.Split(string(data), "\n") {
			got[l] = true
		}
	}
	n := 0
	for _, l := range t.sent {
		if !got[l] {
			n++
		}
	}
	return n, nil
}

// spread runs one group of n members with the steering mode and counts
// the connections each member took (from -v's "member I of N took").
func (b *bench) spread(mode string, n, conns, rate int) error {
	s, err := b.start("--steer", mode, "--members", fmt.Sprint(n), "127.0.0.1", fmt.Sprint(b.port))
	if err != nil {
		return err
	}
	var t tally
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.clients(ctx, rate, &t); close(done) }()
	for t.total() < int64(conns) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if err := s.stop(); err != nil {
		return err
	}
	per := make([]int, n)
	re := regexp.MustCompile(`^member (\d+) of \d+ took`)
	s.stderr.mu.Lock()
	for _, l := range s.stderr.lines {
		if m := re.FindStringSubmatch(l); m != nil {
			// The pattern matched digits: only an overflow fails, and
			// that index is out of range anyway.
			if i, err := strconv.Atoi(m[1]); err == nil && i < n {
				per[i]++
			}
		}
	}
	s.stderr.mu.Unlock()
	total := 0
	for _, c := range per {
		total += c
	}
	var parts []string
	for i, c := range per {
		parts = append(parts, fmt.Sprintf("%d:%.1f%%", i, 100*float64(c)/float64(max(total, 1))))
	}
	fmt.Printf("spread %-4s members=%d connections=%d failed=%d share %s\n", mode, n, total, t.total()-t.ok.Load(), strings.Join(parts, " "))
	return nil
}
