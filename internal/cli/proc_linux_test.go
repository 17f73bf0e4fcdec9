package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tuple-net/tuple/internal/netnstest"
)

// proc is a program running inside a test namespace, with its stdin as a
// pipe the test writes and its stdout/stderr collected as they arrive.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
	outR   *os.File // set when the caller streams stdout itself
	outW   *os.File // the child's end of outR, closed here once it started
}

// startIn starts name (tupleBin for "tuple") inside ns. With streamOut the
// caller reads p.outR itself (for large transfers); otherwise stdout is
// collected in p.stdout.
func startIn(t *testing.T, ns *netnstest.NS, streamOut bool, name string, args ...string) *proc {
	t.Helper()
	if name == "tuple" {
		name = tupleBin
	}
	cmd := ns.Command(context.Background(), name, args...)
	return start(t, cmd, streamOut)
}

func start(t *testing.T, cmd *exec.Cmd, streamOut bool) *proc {
	t.Helper()
	p := &proc{t: t, name: strings.Join(cmd.Args, " "), cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if streamOut {
		// Our own pipe rather than StdoutPipe: Wait must not close it
		// before everything is read.
		if p.outR, p.outW, err = os.Pipe(); err != nil {
			t.Fatal(err)
		}
		cmd.Stdout = p.outW
		t.Cleanup(func() { p.outR.Close() })
	} else {
		cmd.Stdout = p.stdout
	}
	cmd.Stderr = p.stderr
	return p
}

// run starts the process (through startFn, so a test can start it from a
// thread inside a namespace) and reaps it in the background.
func (p *proc) run(startFn func(func() error) error) *proc {
	p.t.Helper()
	if startFn == nil {
		startFn = func(f func() error) error { return f() }
	}
	err := startFn(p.cmd.Start)
	if p.outW != nil {
		p.outW.Close()
	}
	if err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	p.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitStderr waits until the process's stderr contains want.
func (p *proc) waitStderr(want string) {
	p.t.Helper()
	if p.stderr.await(10*time.Second, p.done, func(s string) bool { return strings.Contains(s, want) }) {
		return
	}
	select {
	case <-p.done:
		p.t.Fatalf("%s exited (%v) before printing %q; stderr: %s", p.name, p.err, want, p.stderr.String())
	default:
		p.t.Fatalf("%s did not print %q in time; stderr: %s", p.name, want, p.stderr.String())
	}
}

// waitStdout waits until the process's stdout is want.
func (p *proc) waitStdout(want string) {
	p.t.Helper()
	if !p.stdout.await(10*time.Second, p.done, func(s string) bool { return s == want }) {
		p.t.Fatalf("%s printed %q, want %q; stderr: %s", p.name, p.stdout.String(), want, p.stderr.String())
	}
}

// wantExit0 waits for the process to exit 0 and wants stdout to be what
// it printed; why says what the output is.
func (p *proc) wantExit0(stdout, why string) {
	p.t.Helper()
	if code := p.wait(10 * time.Second); code != 0 {
		p.t.Fatalf("%s exited %d: %s", p.name, code, p.stderr.String())
	}
	if got := p.stdout.String(); got != stdout {
		p.t.Errorf("%s printed %q, want %q (%s)", p.name, got, stdout, why)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("%s did not exit within %v; stderr: %s", p.name, timeout, p.stderr.String())
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee) && ee.Exited():
		return ee.ExitCode()
	}
	p.t.Fatalf("%s: %v", p.name, p.err)
	return -1
}

// waitTCPState waits until the socket table of ns shows a TCP socket on
// local port in state (ss's name: "time-wait", "fin-wait-2").
func waitTCPState(t *testing.T, ns *netnstest.NS, state string, port int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("a socket on port %d in %s", port, state), func() bool {
		return strings.TrimSpace(ns.Run(t, "ss", "-Htan", "state", state, fmt.Sprintf("sport = :%d", port))) != ""
	})
}

// waitListening waits until something listens on TCP port inside ns.
func waitListening(t *testing.T, ns *netnstest.NS, port string) {
	t.Helper()
	waitFor(t, "a listener on port "+port, func() bool {
		return strings.TrimSpace(ns.Run(t, "ss", "-Htln", "sport = :"+port)) != ""
	})
}
