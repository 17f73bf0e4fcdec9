package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/tuple-net/tuple/dial"
)

// MaxSinkProcs bounds the processes of one Sink.
const MaxSinkProcs = 64

// SinkSpec is a sink: processes sharing one port with SO_REUSEPORT that
// accept and hold connections.
type SinkSpec struct {
	// Listen is the address to accept on; port 0 picks one.
	Listen netip.AddrPort
	// Procs is the number of processes sharing the port (1-MaxSinkProcs).
	Procs int
	// Hold is how long the sink runs.
	Hold time.Duration
	// Stderr receives the workers' own error messages; nil means os.Stderr.
	Stderr io.Writer
	// Ready, when set, is called with the bound address once the workers
	// hold the listeners.
	Ready func(netip.AddrPort)
	// Progress, when set, is called about every 250 ms with the
	// connections accepted so far.
	Progress func(accepted int)
}

// SinkReport is what a sink did.
type SinkReport struct {
	Listen   string         `json:"listen"`
	Procs    int            `json:"procs"`
	Accepted int            `json:"accepted"`
	PerProc  []int          `json:"per_proc"`
	Errors   map[string]int `json:"errors,omitempty"` // accept errors by errno name
}

// Sink accepts and holds connections on spec.Listen for spec.Hold, or until
// ctx ends, and reports how many each process took. A process that ran out
// of descriptors comes back as *FileLimitError beside the report: the
// connections it could not take waited in the accept queue.
func Sink(ctx context.Context, spec SinkSpec) (SinkReport, error) {
	switch {
	case !spec.Listen.IsValid():
		return SinkReport{}, errors.New("load: sink: no address to listen on")
	case spec.Hold <= 0:
		return SinkReport{}, errors.New("load: sink: the hold time must be positive")
	case spec.Procs < 1 || spec.Procs > MaxSinkProcs:
		return SinkReport{}, fmt.Errorf("load: sink: want 1-%d processes, got %d", MaxSinkProcs, spec.Procs)
	}
	if spec.Stderr == nil {
		spec.Stderr = os.Stderr
	}
	network := "tcp6"
	if spec.Listen.Addr().Is4() {
		network = "tcp4"
	}
	files, addr, err := listenerFiles(ctx, network, spec.Listen.String(), spec.Procs)
	if err != nil {
		return SinkReport{}, err
	}
	jobs := make([]job, spec.Procs)
	for i := range jobs {
		jobs[i] = job{Sink: true, Hold: spec.Hold}
	}
	g, err := startWorkers(jobs, files, spec.Stderr)
	for _, f := range files { // the workers hold the listeners now
		f.Close()
	}
	if err != nil {
		return SinkReport{}, err
	}
	defer g.stop()
	if spec.Ready != nil {
		spec.Ready(addr)
	}
	results := g.collect(ctx, spec.Progress)
	g.wait(ctx)
	r := SinkReport{Listen: addr.String(), Procs: spec.Procs, Errors: map[string]int{}}
	for _, m := range results {
		r.Accepted += m.Established
		r.PerProc = append(r.PerProc, m.Established)
		for k, v := range m.Errors {
			r.Errors[k] += v
		}
	}
	return r, fileLimitErrors(results)
}

// listenerFiles opens n listeners sharing address (SO_REUSEPORT) and
// returns their descriptors as files, for the workers, and the bound
// address.
func listenerFiles(ctx context.Context, network, address string, n int) ([]*os.File, netip.AddrPort, error) {
	group, err := dial.ListenGroup(ctx, network, address, n)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	ap := group[0].Addr().(*net.TCPAddr).AddrPort()
	addr := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	files := make([]*os.File, 0, n)
	for _, l := range group {
		f, ferr := l.(*net.TCPListener).File()
		l.Close()
		if ferr != nil {
			err = ferr
			continue
		}
		files = append(files, f)
	}
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return nil, addr, fmt.Errorf("load: listener descriptor: %w", err)
	}
	return files, addr, nil
}
