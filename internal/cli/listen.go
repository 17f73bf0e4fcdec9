package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tuple-net/tuple/internal/sockaddr"
	"github.com/tuple-net/tuple/internal/syncio"
	"github.com/tuple-net/tuple/relay"
	"github.com/tuple-net/tuple/sockopt"
)

// listenOptions are the flags of `tuple listen`, as typed.
type listenOptions struct {
	keep       bool
	udp        bool
	v4, v6     bool
	reusePort  bool
	reuseAddr  bool
	exec       string
	execSet    bool // -e given: an empty CMD is bad input
	verbose    bool
	noShutdown bool
	shutdown   bool   // -N: nc's flag for what tuple does by default
	quit       string // -q SECS
	numeric    bool   // -n: no name or service lookups
	port       string // -p PORT, nc -l's way of giving the port
	nclisten   bool   // -l: accepted for nc users, listening is the command
	maxConns   int    // --max-conns; 0: derived from the limits
	broadcast  bool   // --broadcast: with -k, stdin to every client
	broker     string
	group      listenGroupOptions // listen_group.go
}

// listenPlan is a listen invocation after parsing.
type listenPlan struct {
	proto   string // "tcp" or "udp"
	network string // proto with the -4/-6 suffix
	addr    string // host:port for net.ListenConfig
	local   netip.AddrPort
	sockopt sockopt.Options
	opts    *listenOptions
	quit    time.Duration // with hasQuit: -q
	hasQuit bool
	group   *groupPlan // nil without the group flags
	limOnce sync.Once
	lim     *connSlots // --max-conns, from connLimit
}

func newListenCmd(s Streams) *cobra.Command {
	o := &listenOptions{}
	cmd := &cobra.Command{
		Use:   "listen [flags] [ADDR] PORT  (or [ADDR] -p PORT)",
		Short: "Listen on [ADDR] PORT and relay a connection to stdin/stdout (a netcat server)",
		Long: `Listen on ADDR (default: every address) and PORT (0: the kernel picks one).
ADDR decides the family: 0.0.0.0 or another IPv4 address listens on IPv4 only,
:: on IPv6 and, as net.ipv6.bindv6only says (0: yes), IPv4; no ADDR listens on
both. nc's -l is accepted and changes nothing, -p PORT may give the port.

Without -k, accept one connection, relay it with stdin/stdout the way
'tuple connect' does, and exit when the peer has closed its side.
With -k, keep accepting and serve clients concurrently: what they send is
written to stdout and stdin is not read; use -e to answer them, or
--broadcast to send what stdin reads to every client connected at the time
(stdin is read no faster than the slowest client takes it; a client that
keeps it waiting 10s is left out, and stdin's end shuts every client's write
side down unless --no-shutdown). At most
--max-conns connections are served at once; beyond that new connections are
queued, not refused: they wait in the kernel's accept queue (the listen
backlog) until one ends. The default comes from the descriptor limit
(RLIMIT_NOFILE) and, with -e as non-root, the process limit (RLIMIT_NPROC).
A connection whose command cannot start (the kernel refused the process) is
closed and logged; the server goes on.
-e runs CMD with /bin/sh -c per connection, its stdin and stdout on the
connection, and the four-tuple in TUPLE_LOCAL_ADDR, TUPLE_LOCAL_PORT,
TUPLE_REMOTE_ADDR, TUPLE_REMOTE_PORT and TUPLE_PROTO.

With --reuseport several listeners (processes of the same uid) share the port
and the kernel spreads new connections over them.

With -u, received datagrams go to stdout and stdin is sent to the peer of the
latest datagram (like nc -u -l); it runs until interrupted.`,
		Example: `  tuple listen -v 8080
  tuple listen -k --reuseport 10.0.0.2 80
  tuple listen -k -e 'echo "hello $TUPLE_REMOTE_ADDR:$TUPLE_REMOTE_PORT"' 127.0.0.1 7000
  tuple listen -lvnp 8080`,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("port") {
				if len(args) > 1 {
					return usageError("listen: with -p PORT want at most ADDR, got %d argument(s)", len(args))
				}
				return nil
			}
			if len(args) < 1 || len(args) > 2 {
				return usageError("listen: want [ADDR] PORT, got %d argument(s)", len(args))
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			o.execSet = cmd.Flags().Changed("exec")
			addr, port := "", o.port
			if !cmd.Flags().Changed("port") {
				port = args[len(args)-1]
				args = args[:len(args)-1]
			}
			if len(args) == 1 {
				addr = args[0]
				if addr == "" {
					// An unset variable ("$HOST"), not the wildcard:
					// leave ADDR out for that.
					return usageError("listen: empty ADDR (leave it out to listen on every address)")
				}
				switch {
				case strings.Trim(addr, "0123456789") != "":
				case cmd.Flags().Changed("port"):
					return usageError("listen: the port is given twice, -p %s and %s: give it once (ADDR comes before PORT)", o.port, addr)
				default:
					return usageError("listen: ADDR %s is a number, not an address: want [ADDR] PORT, one port", addr)
				}
			}
			plan, err := o.plan(addr, port)
			if err != nil {
				return usageError("listen: %v", err)
			}
			if plan.proto == "udp" {
				return plan.serveUDP(cmd.Context(), s)
			}
			if plan.group != nil {
				return plan.serveGroup(cmd.Context(), s)
			}
			return plan.serveTCP(cmd.Context(), s)
		}),
	}
	addListenFlags(cmd.Flags(), o)
	return cmd
}

// addListenFlags defines listen's flags on f, in the order help lists them.
func addListenFlags(f *pflag.FlagSet, o *listenOptions) {
	f.SortFlags = false
	f.BoolVarP(&o.keep, "keep-open", "k", false, "keep accepting connections, serving clients concurrently")
	f.BoolVarP(&o.udp, "udp", "u", false, "use UDP")
	f.BoolVarP(&o.v4, "ipv4", "4", false, "use IPv4 only")
	f.BoolVarP(&o.v6, "ipv6", "6", false, "use IPv6 only")
	f.BoolVar(&o.reusePort, "reuseport", false, "set SO_REUSEPORT: share the port with other listeners of the same uid that set it")
	f.BoolVar(&o.reuseAddr, "reuseaddr", reuseAddrDefault,
		"SO_REUSEADDR: listen again while old connections on the port are in TIME_WAIT (Go's default on Unix; --reuseaddr=false clears it)")
	f.StringVarP(&o.exec, "exec", "e", "", "run `CMD` (/bin/sh -c) per connection with its stdin/stdout on the connection")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log the listening address and each connection's four-tuple to stderr")
	f.BoolVar(&o.noShutdown, "no-shutdown", false, "keep the socket's write side open when stdin ends")
	f.BoolVar(&o.broadcast, "broadcast", false, "with -k, send what stdin reads to every client connected at the time (stdin's end shuts their write side, unless --no-shutdown)")
	f.IntVar(&o.maxConns, "max-conns", 0, "with -k, serve at most `N` connections at once; more wait in the kernel's accept queue (default: from RLIMIT_NOFILE and, with -e, RLIMIT_NPROC)")
	f.StringVarP(&o.port, "port", "p", "", "the `PORT` to listen on, as nc -l -p gives it")
	f.BoolVarP(&o.nclisten, "listen", "l", false, "accepted for nc users (listening is what this command does)")
	f.BoolVarP(&o.numeric, "numeric", "n", false, "no name or service lookups: ADDR must be an address, PORT a number")
	f.BoolVarP(&o.shutdown, "shutdown", "N", false, "shut down the socket's write side when stdin ends (the default; accepted for nc users)")
	f.StringVarP(&o.quit, "quit", "q", "", "without -k, end the session `SECS` after stdin ends, even if the peer has not closed (0: at once)")
	f.StringVar(&o.broker, "broker", "", "get the socket from the tuple broker at `PATH` (see tuple broker)")
	addListenGroupFlags(f, &o.group)
}

// plan checks flags and arguments; every error it returns is bad input.
func (o *listenOptions) plan(addr, port string) (*listenPlan, error) {
	p := &listenPlan{proto: "tcp", opts: o}
	if o.udp {
		p.proto = "udp"
	}
	if err := p.checkFlags(port); err != nil {
		return nil, err
	}
	fam, err := pickFamily(o.v4, o.v6)
	if err != nil {
		return nil, err
	}
	p.network = fam.network(p.proto)
	n, err := parsePort(p.proto, port, true)
	if err != nil {
		return nil, err
	}
	if err := p.address(fam, addr, n); err != nil {
		return nil, err
	}
	p.sockopt = sockopt.Options{ReuseAddr: o.reuseAddr, ReusePort: o.reusePort,
		ClearReuseAddr: !o.reuseAddr && reuseAddrDefault, V6Only: p.sockopt.V6Only}
	if err := p.sockopt.Check(); err != nil {
		return nil, err
	}
	if o.broker != "" && !p.local.IsValid() {
		return nil, fmt.Errorf("--broker needs ADDR as a literal IP address, not %q", addr)
	}
	if p.group, err = o.checkGroup(); err != nil {
		return nil, err
	}
	if o.broadcast && p.group != nil {
		return nil, fmt.Errorf("--broadcast serves one listener's clients; --steer, --members, --migrate and --handover run several")
	}
	if o.broker != "" && p.group != nil {
		return nil, fmt.Errorf("--broker hands out one socket; --steer, --members, --migrate and --handover open their own")
	}
	return p, nil
}

// checkFlags checks the flags that exclude each other (-e, -N, -q, -k,
// -u, --max-conns) and, with -n, that PORT is a number.
func (p *listenPlan) checkFlags(port string) error {
	o := p.opts
	if o.execSet && strings.TrimSpace(o.exec) == "" {
		return fmt.Errorf("-e: empty command")
	}
	if o.noShutdown && o.shutdown {
		return fmt.Errorf("-N and --no-shutdown exclude each other")
	}
	if o.maxConns < 0 {
		return fmt.Errorf("--max-conns %d: want at least 1 (0: from the limits)", o.maxConns)
	}
	if o.quit != "" {
		var err error
		if p.quit, p.hasQuit, err = parseQuit(o.quit); err != nil {
			return err
		}
		if o.keep || o.udp {
			return fmt.Errorf("-q works with one TCP connection: -k and -u sessions do not end with stdin")
		}
	}
	if o.broadcast {
		switch {
		case !o.keep:
			return fmt.Errorf("--broadcast works with -k: without it stdin already goes to the one client")
		case o.exec != "":
			return fmt.Errorf("--broadcast and -e exclude each other: with -e each client talks to its command")
		}
	}
	if o.numeric {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("-n: port %q is not a number 0-65535", port)
		}
	}
	if o.udp {
		switch {
		case o.exec != "":
			return fmt.Errorf("-e works with TCP only: UDP has no connection to hand over")
		case o.keep:
			return fmt.Errorf("-k has no meaning with -u: a UDP listener already hears every peer")
		}
	}
	return nil
}

// address sets what to listen on from ADDR (an address, or a name the
// resolver turns into one; none: every address of the family) and port n.
// A literal address decides the family.
func (p *listenPlan) address(fam family, addr string, n uint16) error {
	host := ""
	switch {
	case addr != "":
		a, err := parseIP(addr)
		if err != nil {
			// A name: let the resolver turn it into an address.
			if addr[0] == '-' || p.opts.numeric {
				return err
			}
			if err := checkHostName("ADDR", addr); err != nil {
				return err
			}
			host = addr
			break
		}
		if err := fam.check("ADDR", addr, a); err != nil {
			return err
		}
		host = a.String()
		p.local = netip.AddrPortFrom(a, n)
		// The address decides the family: Go would make 0.0.0.0 a
		// dual-stack [::] listener, where the user asked for IPv4.
		switch {
		case a.Is4():
			p.network = p.proto + "4"
		case a.IsUnspecified() && fam == anyFamily:
			// Go clears IPV6_V6ONLY on a "tcp" [::] listener; the
			// kernel's default (net.ipv6.bindv6only) decides instead.
			p.sockopt.V6Only = kernelV6OnlyDefault()
		}
	case fam == ipv4Only:
		host = "0.0.0.0"
		p.local = netip.AddrPortFrom(netip.IPv4Unspecified(), n)
	default:
		p.local = netip.AddrPortFrom(netip.IPv6Unspecified(), n)
	}
	p.addr = net.JoinHostPort(host, strconv.Itoa(int(n)))
	return nil
}

// reuseAddrDefault is SO_REUSEADDR as Go sets it on listeners: on, except on
// Windows, where SO_REUSEADDR would let another socket take the port over.
var reuseAddrDefault = runtime.GOOS != "windows"

// serveTCP listens and serves one connection, or all of them with -k, until
// ctx ends. It returns after every connection it accepted is closed.
func (p *listenPlan) serveTCP(ctx context.Context, s Streams) error {
	ln, err := p.listenTCP(ctx)
	if err != nil {
		return reportNetFailure(s.Err, p.failure(err))
	}
	defer ln.Close()
	// Standard output's reader leaving ends a -k server (end), as SIGPIPE
	// ends nc -lk: what clients send has nowhere to go.
	ctx, end := context.WithCancelCause(ctx)
	defer end(nil)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	errOut := &syncio.Writer{W: s.Err}
	// With port 0 the kernel picks the port: say which, even without -v.
	if p.opts.verbose || p.local.Port() == 0 {
		warnf(errOut, "listening on %s (%s)\n", boundOf(ln.Addr(), ln), p.proto)
	}

	if !p.opts.keep {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on %s: %s", formatAddrPort(sockaddr.OfNet(ln.Addr())), describeErr(err))
		}
		ln.Close() // one connection only, like nc -l
		return p.handle(ctx, conn, s.In, s.Out, errOut, nil)
	}

	out := &syncio.Writer{W: s.Out}
	lim := p.connLimit(errOut)
	var fan *broadcast
	if p.opts.broadcast {
		// Reads stdin until it ends, the server's end or not.
		fan = newBroadcast(!p.opts.noShutdown, errOut)
		go fan.readFrom(s.In)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		if !lim.acquire(ctx) {
			return outputGoneCause(ctx)
		}
		conn, err := ln.Accept()
		if err != nil {
			lim.release()
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return outputGoneCause(ctx)
			}
			// Out of descriptors and the like: say so and go on, as
			// a server would, without spinning.
			warnf(errOut, "tuple: accept: %s\n", describeErr(err))
			time.Sleep(100 * time.Millisecond)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer lim.release()
			if fan == nil {
				p.serveConn(ctx, end, conn, out, errOut, nil)
				return
			}
			remove, sent := fan.add(conn)
			defer remove()
			p.serveConn(ctx, end, conn, out, errOut, sent)
		}()
	}
}

// serveConn serves one connection of a server that keeps accepting (-k,
// a group's member); standard output's reader leaving ends the server
// (end), other failures are reported and the server goes on.
func (p *listenPlan) serveConn(ctx context.Context, end context.CancelCauseFunc, conn net.Conn, out, errOut io.Writer, broadcastSent func() int64) {
	switch err := p.handle(ctx, conn, nil, out, errOut, broadcastSent); {
	case outputGone(err):
		end(err)
	case err != nil:
		warnf(errOut, "tuple: %v\n", err)
	}
}

// outputGoneCause is the error a server loop ends with: standard output's
// reader leaving, when that is what cancelled ctx, or none.
func outputGoneCause(ctx context.Context) error {
	if err := context.Cause(ctx); outputGone(err) {
		return err
	}
	return nil
}

// connLimit is the plan's --max-conns, shared by every listener of the
// plan (a --steer group's members too), made at first use.
func (p *listenPlan) connLimit(errOut io.Writer) *connSlots {
	p.limOnce.Do(func() {
		if p.opts.exec != "" {
			warmThreads(spareThreads)
		}
		n, why := p.opts.maxConns, "--max-conns"
		if n == 0 {
			n, why = defaultMaxConns(p.opts.exec != "")
		}
		if p.opts.verbose {
			warnf(errOut, "serving at most %d connections at once (%s); more wait in the accept queue\n", n, why)
		}
		p.lim = &connSlots{slots: make(chan struct{}, n), why: why, errOut: errOut}
	})
	return p.lim
}

// spareThreads is how many idle OS threads a -k -e server starts with.
// Go's runtime aborts the process when it needs a new thread and the
// kernel refuses one, which happens once the children fill RLIMIT_NPROC;
// threads made up front stay idle in the runtime and are used instead. A
// few suffice: forks are serialised (syscall.ForkLock), children are
// waited for on pidfds, and output is written one chunk at a time.
const spareThreads = 8

// warmThreads makes the runtime start n OS threads now: each of n
// goroutines holds its own thread (LockOSThread) until all hold one, and
// the threads stay in the runtime's idle list after they let go.
func warmThreads(n int) {
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	for range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			ready.Done()
			<-release
			runtime.UnlockOSThread()
		}()
	}
	ready.Wait()
	close(release)
	done.Wait()
}

// connSlots holds a slot per live connection: when none is free, accept
// waits and new connections queue in the kernel (the listen backlog), so
// no client can push the server past the limits it was started with.
type connSlots struct {
	slots    chan struct{}
	why      string
	errOut   io.Writer
	mu       sync.Mutex
	lastFull time.Time
}

// acquire takes a slot, waiting (and saying so, at most every 10 s) while
// none is free; false when ctx ends first.
func (c *connSlots) acquire(ctx context.Context) bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
	}
	c.mu.Lock()
	if time.Since(c.lastFull) > 10*time.Second {
		c.lastFull = time.Now()
		warnf(c.errOut, "tuple: %d connections live (at most %d: %s); new ones wait in the accept queue\n", cap(c.slots), cap(c.slots), c.why)
	}
	c.mu.Unlock()
	select {
	case c.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *connSlots) release() { <-c.slots }

// handle serves one accepted connection: a command with -e, else a relay
// with in/out (in is nil with -k: clients only talk to stdout).
func (p *listenPlan) handle(ctx context.Context, conn net.Conn, in io.Reader, out, errOut io.Writer, broadcastSent func() int64) error {
	local, remote := sockaddr.OfNet(conn.LocalAddr()), sockaddr.OfNet(conn.RemoteAddr())
	tuple := formatAddrPort(local) + " <- " + formatAddrPort(remote)
	if p.opts.verbose {
		warnf(errOut, "accepted %s (%s)\n", tuple, p.proto)
	}
	if p.opts.exec != "" {
		return p.runCommand(ctx, conn, local, remote, errOut)
	}
	res, err := relay.Run(ctx, conn, in, out, relay.Options{NoShutdown: p.opts.noShutdown,
		Quit: p.hasQuit, QuitAfterInput: p.quit})
	if p.opts.verbose {
		if broadcastSent != nil {
			res.Sent += broadcastSent()
		}
		warnf(errOut, "closed %s (%s): %d bytes received, %d sent\n", tuple, p.proto, res.Received, res.Sent)
	}
	if err != nil && ctx.Err() == nil {
		return sessionFailed(fmt.Sprintf("connection %s (%s)", tuple, p.proto), err)
	}
	return nil
}

// runCommand hands the connection's descriptor to /bin/sh -c CMD as stdin
// and stdout, so the command reads the peer's EOF and its own exit closes
// the connection. The four-tuple goes in the environment.
func (p *listenPlan) runCommand(ctx context.Context, conn net.Conn, local, remote netip.AddrPort, errOut io.Writer) error {
	defer conn.Close()
	filer, ok := conn.(interface{ File() (*os.File, error) })
	if !ok {
		return fmt.Errorf("-e: a %T cannot be handed to a command", conn)
	}
	f, err := filer.File()
	if err != nil {
		return fmt.Errorf("-e is not supported on %s/%s: %v", runtime.GOOS, runtime.GOARCH, err)
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", p.opts.exec)
	cmd.Stdin, cmd.Stdout = f, f
	cmd.Stderr = errOut
	if lw, ok := errOut.(*syncio.Writer); ok {
		if file, ok := lw.W.(*os.File); ok {
			cmd.Stderr = file // the command writes to our stderr directly
		}
	}
	cmd.WaitDelay = 2 * time.Second
	cmd.Env = append(os.Environ(),
		"TUPLE_LOCAL_ADDR="+local.Addr().String(),
		"TUPLE_LOCAL_PORT="+strconv.Itoa(int(local.Port())),
		"TUPLE_REMOTE_ADDR="+remote.Addr().String(),
		"TUPLE_REMOTE_PORT="+strconv.Itoa(int(remote.Port())),
		"TUPLE_PROTO="+p.proto,
	)
	wait, err := startChild(cmd)
	if err != nil {
		// The kernel refused the process (EAGAIN: RLIMIT_NPROC or
		// threads-max): this connection is closed, the server goes on.
		hint := ""
		if errors.Is(err, syscall.EAGAIN) {
			hint = "; the process limit is reached: lower --max-conns or raise RLIMIT_NPROC"
		}
		return fmt.Errorf("refused %s <- %s: -e %q: %s%s", formatAddrPort(local), formatAddrPort(remote), p.opts.exec, describeErr(err), hint)
	}
	// The command holds the connection now; our copies must not keep it open.
	f.Close()
	conn.Close()
	if err := wait(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("-e %q for %s <- %s: %v", p.opts.exec, formatAddrPort(local), formatAddrPort(remote), err)
	}
	return nil
}

// serveUDP receives datagrams to stdout and sends stdin to the latest peer
// until ctx ends.
func (p *listenPlan) serveUDP(ctx context.Context, s Streams) error {
	pc, err := p.listenUDP(ctx)
	if err != nil {
		return reportNetFailure(s.Err, p.failure(err))
	}
	errOut := &syncio.Writer{W: s.Err}
	// With port 0 the kernel picks the port: say which, even without -v.
	if p.opts.verbose || p.local.Port() == 0 {
		warnf(errOut, "listening on %s (%s)\n", boundOf(pc.LocalAddr(), pc), p.proto)
	}
	conn := &lastPeerConn{PacketConn: pc, known: make(chan struct{}), closed: make(chan struct{})}
	if p.opts.verbose {
		conn.onNewPeer = func(peer net.Addr) {
			warnf(errOut, "peer %s <- %s (%s)\n", formatAddrPort(sockaddr.OfNet(pc.LocalAddr())), formatAddrPort(sockaddr.OfNet(peer)), p.proto)
		}
	}
	// Buffers that hold any datagram: a shorter read cuts it silently.
	_, err = relay.Run(ctx, conn, s.In, s.Out, relay.Options{NoShutdown: true,
		BufferSize: relay.DatagramBufferSize, InputChunk: relay.MaxDatagramInput})
	if err != nil && ctx.Err() == nil {
		return sessionFailed("udp "+formatAddrPort(sockaddr.OfNet(pc.LocalAddr())), err)
	}
	return nil
}

// lastPeerConn presents a UDP socket as a connection to whoever sent the
// latest datagram, the way nc -u -l answers. Writes wait for the first peer.
type lastPeerConn struct {
	net.PacketConn
	mu        sync.Mutex
	peer      net.Addr
	known     chan struct{} // closed at the first datagram
	closed    chan struct{} // closed by Close
	closeOnce sync.Once
	onNewPeer func(net.Addr)
}

func (c *lastPeerConn) Read(b []byte) (int, error) {
	n, from, err := c.ReadFrom(b)
	if err != nil {
		return n, err
	}
	c.mu.Lock()
	changed := c.peer == nil || c.peer.String() != from.String()
	if c.peer == nil {
		close(c.known)
	}
	c.peer = from
	c.mu.Unlock()
	if changed && c.onNewPeer != nil {
		c.onNewPeer(from)
	}
	return n, nil
}

func (c *lastPeerConn) Write(b []byte) (int, error) {
	select {
	case <-c.known:
	case <-c.closed:
		return 0, net.ErrClosed
	}
	return c.WriteTo(b, c.RemoteAddr())
}

func (c *lastPeerConn) RemoteAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peer
}

func (c *lastPeerConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.PacketConn.Close()
}

// failure describes a failed listen (or UDP bind) with the options used.
func (p *listenPlan) failure(err error) *netFailure {
	f := newNetFailure("listen", p.proto, p.local, netip.AddrPort{}, err)
	f.opts = p.sockopt
	return f
}
