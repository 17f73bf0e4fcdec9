package load

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/tuple-net/tuple/internal/reexec"
)

// workerGroup is the running worker processes of one run or sink.
type workerGroup struct {
	cmds    []*exec.Cmd
	stdins  []io.WriteCloser
	msgs    chan result
	readers sync.WaitGroup // one per worker, reading its stdout
	done    chan struct{}  // closed when every worker's output has ended
}

// startWorkers starts one worker per job; files[i], when given, becomes
// worker i's descriptor 3.
func startWorkers(jobs []job, files []*os.File, stderr io.Writer) (*workerGroup, error) {
	g := &workerGroup{msgs: make(chan result, 64), done: make(chan struct{})}
	for i, j := range jobs {
		arg, err := json.Marshal(j)
		if err != nil {
			g.stop()
			return nil, err
		}
		cmd, err := reexec.Command(workerName, string(arg))
		if err != nil {
			g.stop()
			return nil, fmt.Errorf("load: start worker %d: %w", i, err)
		}
		cmd.Stderr = stderr
		if files != nil {
			cmd.ExtraFiles = []*os.File{files[i]}
		}
		stdin, err1 := cmd.StdinPipe()
		stdout, err2 := cmd.StdoutPipe()
		if err := firstErr(err1, err2, cmd.Start()); err != nil {
			g.stop()
			return nil, fmt.Errorf("load: start worker %d: %w", i, err)
		}
		g.cmds = append(g.cmds, cmd)
		g.stdins = append(g.stdins, stdin)
		g.readers.Add(1)
		go func() {
			defer g.readers.Done()
			sc := bufio.NewScanner(stdout)
			sc.Buffer(nil, 16<<20) // a result carries every latency sample
			for sc.Scan() {
				var m msg
				if json.Unmarshal(sc.Bytes(), &m) == nil {
					g.msgs <- result{i, m}
				}
			}
			_, _ = io.Copy(io.Discard, stdout)
			g.msgs <- result{i, msg{Type: "exit"}} // its output ended
		}()
	}
	go func() { g.readers.Wait(); close(g.done) }()
	return g, nil
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// collect gathers each worker's result, reporting progress, until every
// worker has reported or ended; when ctx is done it asks the workers to stop
// and keeps the results they still send.
func (g *workerGroup) collect(ctx context.Context, progress func(int)) []result {
	latest := make([]int, len(g.cmds))
	results := make([]*result, len(g.cmds))
	got := 0
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	stopped := false
	finished := make([]bool, len(g.cmds))
	for got < len(g.cmds) {
		select {
		case m := <-g.msgs:
			if finished[m.worker] {
				continue
			}
			switch m.Type {
			case "result":
				results[m.worker] = &m
				finished[m.worker] = true
				got++
			case "exit": // ended without a result; its error went to stderr
				finished[m.worker] = true
				got++
			default:
				latest[m.worker] = m.Established
			}
		case <-tick.C:
			if progress != nil {
				total := 0
				for _, n := range latest {
					total += n
				}
				progress(total)
			}
		case <-ctx.Done():
			if !stopped {
				g.signal()
				stopped = true
			}
		}
	}
	var out []result
	for _, r := range results {
		if r != nil {
			out = append(out, *r)
		}
	}
	return out
}

// release tells every worker that all have opened their connections, so
// their hold starts.
func (g *workerGroup) release() {
	for _, in := range g.stdins {
		_, _ = io.WriteString(in, "hold\n") // a worker already gone needs no release
	}
}

// signal asks every worker to stop: SIGTERM, and stdin closed.
func (g *workerGroup) signal() {
	for i, c := range g.cmds {
		_ = c.Process.Signal(syscall.SIGTERM) // fails only for a worker already gone
		g.stdins[i].Close()
	}
}

// wait lets the workers finish on their own (their hold time), stopping them
// if ctx ends first; it returns when all have exited.
func (g *workerGroup) wait(ctx context.Context) {
	drained := make(chan struct{})
	go func() { // keep reading so no worker blocks on a full pipe
		for {
			select {
			case <-g.msgs:
			case <-g.done:
				close(drained)
				return
			}
		}
	}()
	select {
	case <-drained:
	case <-ctx.Done():
		g.signal()
		<-drained
	}
	g.stop()
}

// stop ends the workers (a no-op for those that already exited) and reaps
// them. A worker that does not stop on SIGTERM within 5s is killed; its
// connections still close with a reset (SO_LINGER 0).
func (g *workerGroup) stop() {
	for i, c := range g.cmds {
		g.stdins[i].Close()
		exited := make(chan struct{})
		go func() {
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = c.Process.Kill()
			}
		}()
		_ = c.Process.Signal(syscall.SIGTERM)
		_ = c.Wait() // its exit status says nothing its report did not
		close(exited)
	}
	g.cmds, g.stdins = nil, nil
	// Take what the readers still send, so none is left blocked.
	fin := make(chan struct{})
	go func() { g.readers.Wait(); close(fin) }()
	for {
		select {
		case <-g.msgs:
		case <-fin:
			return
		}
	}
}
