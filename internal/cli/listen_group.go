package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/tuple-net/tuple/dial"
	"github.com/tuple-net/tuple/handover"
	"github.com/tuple-net/tuple/internal/sockaddr"
	"github.com/tuple-net/tuple/internal/syncio"
	"github.com/tuple-net/tuple/internal/unixsock"
	"github.com/tuple-net/tuple/reuseport"
)

// listenGroupOptions are listen's flags for reuseport groups and restarts
// without a lost connection.
type listenGroupOptions struct {
	steer    string
	members  int
	migrate  bool
	handover string
}

func addListenGroupFlags(f *pflag.FlagSet, o *listenGroupOptions) {
	f.StringVar(&o.steer, "steer", "", "with --reuseport -k: open a group of --members listeners steered by `MODE`: hash (the kernel's), cpu (member i serves CPU i), map (an eBPF program over a socket array)")
	f.IntVar(&o.members, "members", 0, "listeners in the --steer group (default: one per CPU)")
	f.BoolVar(&o.migrate, "migrate", false, "with --reuseport -k: a closing member's queued connections move to a live member, all but a handshake finishing at the instant of the close (a SELECT_OR_MIGRATE program; needs root)")
	f.StringVar(&o.handover, "handover", "", "with -k: take over the listening sockets of the tuple listen serving hand-over at Unix socket `PATH`, and offer ours there to the next one")
}

// groupPlan is the checked form of listenGroupOptions.
type groupPlan struct {
	steer    reuseport.Steering
	members  int
	migrate  bool
	handover string
}

// checkGroup validates the group flags against the others; every error is
// bad input. It returns nil when no group flag is set.
func (o *listenOptions) checkGroup() (*groupPlan, error) {
	g := &o.group
	if g.steer == "" && g.members == 0 && !g.migrate && g.handover == "" {
		return nil, nil
	}
	switch {
	case o.udp:
		return nil, fmt.Errorf("--steer, --members, --migrate and --handover work with TCP only")
	case !o.keep:
		return nil, fmt.Errorf("--steer, --members, --migrate and --handover need -k: they serve many connections")
	case (g.steer != "" || g.members != 0 || g.migrate) && !o.reusePort:
		return nil, fmt.Errorf("--steer, --members and --migrate need --reuseport: they act on a SO_REUSEPORT group")
	case g.members < 0 || g.members > 1024:
		return nil, fmt.Errorf("--members %d: want 1-1024", g.members)
	}
	if g.handover != "" {
		// Before anything listens: a file or directory at PATH is
		// bad input, and never replaced.
		var nse *unixsock.NotSocketError
		if err := unixsock.Check(g.handover); errors.As(err, &nse) {
			return nil, fmt.Errorf("--handover: %v", err)
		}
		// A path that cannot be looked at (EACCES) fails where the
		// offer is made, as a runtime failure (exit 1).
	}
	p := &groupPlan{members: g.members, migrate: g.migrate, handover: g.handover}
	if g.steer != "" {
		s, err := reuseport.ParseSteering(g.steer)
		if err != nil {
			return nil, fmt.Errorf("--steer: %v", err)
		}
		p.steer = s
		if p.members == 0 {
			p.members = runtime.NumCPU()
		}
	}
	if p.members == 0 {
		p.members = 1
	}
	if p.migrate && p.steer == reuseport.SteerCPU {
		return nil, fmt.Errorf("--migrate with --steer cpu: the cpu program is classic BPF, which cannot migrate; set net.ipv4.tcp_migrate_req=1 instead")
	}
	return p, nil
}

// serveGroup serves -k with the group flags: it takes over the listeners of
// the process at --handover or opens a (steered) group, accepts on every
// member, and offers them at --handover until a successor takes them.
func (p *listenPlan) serveGroup(ctx context.Context, s Streams) error {
	g := p.group
	// Standard output's reader leaving ends the group (serveConn).
	ctx, end := context.WithCancelCause(ctx)
	defer end(nil)
	connCtx, stopCtx, cancel := twoStageShutdown(ctx)
	defer cancel()
	errOut := &syncio.Writer{W: s.Err}
	lns, taken, sup, err := p.groupListeners(ctx, s.Err)
	if err != nil {
		return err
	}
	if sup != nil {
		defer sup.Close() // the program stays with the group
	}
	if p.opts.verbose || p.local.Port() == 0 {
		how := "opened"
		if taken != nil {
			how = "taken over from " + g.handover
		}
		warnf(errOut, "listening on %s (%s), %d listener(s) %s\n", boundOf(lns[0].Addr(), lns[0]), p.proto, len(lns), how)
	}

	out := &syncio.Writer{W: s.Out}
	var conns, loops sync.WaitGroup
	defer conns.Wait()
	closeAll := sync.OnceFunc(func() {
		for _, l := range lns {
			l.Close()
		}
	})
	defer closeAll()
	stop := context.AfterFunc(stopCtx, closeAll)
	defer stop()
	for i, l := range lns {
		loops.Add(1)
		go func() {
			defer loops.Done()
			p.acceptMember(connCtx, end, l, i, len(lns), &conns, out, errOut)
		}()
	}
	if taken != nil {
		if err := taken.Ready(stopCtx); err != nil && stopCtx.Err() == nil {
			warnf(errOut, "tuple: --handover %s: %s\n", g.handover, describeErr(err))
		}
	}
	if g.handover != "" {
		offer, err := handover.Listen(g.handover)
		if err != nil {
			closeAll()
			loops.Wait()
			var nse *unixsock.NotSocketError
			if errors.As(err, &nse) { // it came after the check in plan
				return usageError("listen: --handover: %v", nse)
			}
			return fmt.Errorf("listen: --handover %s: %s", g.handover, describeErr(err))
		}
		defer offer.Close()
		go p.offerHandover(stopCtx, offer, lns, closeAll, errOut)
	}
	loops.Wait()
	return outputGoneCause(ctx)
}

// twoStageShutdown is a server's shutdown: the first SIGINT or SIGTERM
// ends stopCtx (stop accepting, let the open connections finish:
// cancelling them would reset their unread data); a second one ends
// connCtx too. cancel ends both and stops listening for signals.
func twoStageShutdown(ctx context.Context) (connCtx, stopCtx context.Context, cancel func()) {
	connCtx, cancelConns := context.WithCancel(ctx)
	stopCtx, stopAccepting := context.WithCancel(ctx)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
			stopAccepting()
		case <-connCtx.Done():
			return
		}
		select {
		case <-sigs:
			cancelConns()
		case <-connCtx.Done():
		}
	}()
	return connCtx, stopCtx, func() {
		signal.Stop(sigs)
		stopAccepting()
		cancelConns()
	}
}

// groupListeners takes the listeners over from the --handover socket when
// a server there offers them, and opens them otherwise (sup, when not nil,
// runs the group's steering program until closed).
func (p *listenPlan) groupListeners(ctx context.Context, errOut io.Writer) ([]net.Listener, *handover.Takeover, *reuseport.Supervisor, error) {
	if h := p.group.handover; h != "" {
		t, err := handover.Take(ctx, h)
		switch {
		case err == nil:
			// Before Ready: the old process stops only once told.
			if err := p.checkTaken(ctx, t.Listeners); err != nil {
				t.Close()
				return nil, nil, nil, err
			}
			return t.Listeners, t, nil, nil
		case !errors.Is(err, handover.ErrNoOffer):
			return nil, nil, nil, fmt.Errorf("--handover %s: %s", h, describeErr(err))
		}
	}
	lns, sup, err := p.openGroup(ctx, errOut)
	return lns, nil, sup, err
}

// offerHandover offers the listeners at the --handover socket until a
// successor takes them (closeAll then stops this server's accepting) or
// stopCtx ends.
func (p *listenPlan) offerHandover(stopCtx context.Context, offer *handover.Offer, lns []net.Listener, closeAll func(), errOut io.Writer) {
	err := offer.Serve(stopCtx, lns, closeAll)
	switch {
	case err == nil:
		if p.opts.verbose {
			warnf(errOut, "handed %d listener(s) over at %s; finishing open connections\n", len(lns), p.group.handover)
		}
	case stopCtx.Err() == nil:
		warnf(errOut, "tuple: --handover %s: %s\n", p.group.handover, describeErr(err))
	}
}

// openGroup opens the listeners: one with p's socket options, or a
// reuseport group with its steering.
func (p *listenPlan) openGroup(ctx context.Context, errOut io.Writer) ([]net.Listener, *reuseport.Supervisor, error) {
	g := p.group
	if !p.sockopt.ReusePort || (g.members == 1 && g.steer == reuseport.SteerHash && !g.migrate) {
		lc := net.ListenConfig{Control: p.sockopt.Control}
		ln, err := lc.Listen(ctx, p.network, p.addr)
		if err != nil {
			return nil, nil, reportNetFailure(errOut, p.failure(err))
		}
		return []net.Listener{ln}, nil, nil
	}
	var opts []dial.GroupOption
	var sup *reuseport.Supervisor
	switch {
	case g.steer == reuseport.SteerCPU:
		opts = append(opts, dial.SteerCPU())
	case g.steer == reuseport.SteerMap:
		var err error
		sup, err = reuseport.NewSupervisor(g.members, reuseport.SupervisorOptions{Migrate: g.migrate})
		if err != nil {
			return nil, nil, fmt.Errorf("--steer map: %s", describeErr(err))
		}
		opts = append(opts, dial.SteerMap(sup))
	case g.migrate:
		opts = append(opts, dial.Migrate())
	}
	lns, err := dial.ListenGroup(ctx, p.network, p.addr, g.members, opts...)
	if err != nil {
		if sup != nil {
			sup.Close()
		}
		return nil, nil, reportNetFailure(errOut, p.failure(err))
	}
	return lns, sup, nil
}

// acceptMember accepts on one member until it is closed, serving each
// connection in its own goroutine (counted in conns).
func (p *listenPlan) acceptMember(ctx context.Context, end context.CancelCauseFunc, ln net.Listener, idx, n int, conns *sync.WaitGroup, out, errOut io.Writer) {
	lim := p.connLimit(errOut) // --max-conns counts the whole group
	for {
		if !lim.acquire(ctx) {
			return
		}
		conn, err := ln.Accept()
		if err != nil {
			lim.release()
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			warnf(errOut, "tuple: accept: %s\n", describeErr(err))
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if p.opts.verbose && n > 1 {
			warnf(errOut, "member %d of %d took %s <- %s\n", idx, n,
				formatAddrPort(sockaddr.OfNet(conn.LocalAddr())), formatAddrPort(sockaddr.OfNet(conn.RemoteAddr())))
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer lim.release()
			p.serveConn(ctx, end, conn, out, errOut, nil)
		}()
	}
}
