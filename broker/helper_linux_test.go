package broker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tuple-net/tuple/inet"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the client processes the tests run as other
// uids: TestMain calls helperMain when helperEnv names a mode. Each mode
// prints its outcome as lines on stdout and holds its sockets until stdin
// closes.

const helperEnv = "TUPLE_BROKER_TEST_HELPER"

func helperMain(mode string, args []string) int {
	run, ok := helperModes[mode]
	if !ok {
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		return 2
	}
	// Generous: CI boxes under load make every exchange slow, and a
	// timeout here would look like a refusal.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return run(ctx, helperIO{out: bufio.NewWriter(os.Stdout)}, args)
}

// helperModes are the helper's modes by name; each gets the mode's
// arguments.
var helperModes = map[string]func(ctx context.Context, h helperIO, args []string) int{
	"listen":     helperListen,
	"request":    helperRequest,
	"hog":        helperHog,
	"selflisten": helperSelflisten,
	"activated":  helperActivated,
	"dying":      helperDying,
	"nofile":     helperNofile,
	"hostile":    helperHostile,
}

// helperIO is how a helper talks to the test: lines on stdout, and stdin
// held open until the test is done with it.
type helperIO struct{ out *bufio.Writer }

// say prints one line at once.
func (h helperIO) say(format string, a ...any) {
	fmt.Fprintf(h.out, format+"\n", a...)
	h.out.Flush()
}

// wait blocks until stdin closes.
func (h helperIO) wait() { io.Copy(io.Discard, os.Stdin) }

// helperListen: SOCK ADDR [GROUP]: a broker listener that answers "uid=N pid=P"
func helperListen(ctx context.Context, h helperIO, args []string) int {
	lc := &ListenConfig{Client: Client{Path: args[0]}}
	if len(args) > 2 {
		lc.Group = args[2]
	}
	ln, err := lc.Listen(ctx, "tcp", args[1])
	if err != nil {
		h.say("denied %v", err)
		h.wait()
		return 0
	}
	h.say("granted %s", ln.Addr())
	go serveIdentity(ln)
	h.wait()
	ln.Close()
	return 0
}

// helperRequest: SOCK PROTO ADDR: one bound socket, held
func helperRequest(ctx context.Context, h helperIO, args []string) int {
	c := &Client{Path: args[0]}
	proto, ap, err := parseEndpoint(args[1], args[2])
	if err != nil {
		h.say("error %v", err)
		return 2
	}
	f, resp, err := c.Socket(ctx, &Request{Proto: proto, Address: ap.Addr(), Port: ap.Port()})
	if err != nil {
		h.say("denied %v", err)
		h.wait()
		return 0
	}
	h.say("granted %s", resp.Local)
	h.wait()
	f.Close()
	return 0
}

// helperHog: SOCK ADDR N: ask N times for any port of the grant, hold what comes
func helperHog(ctx context.Context, h helperIO, args []string) int {
	c := &Client{Path: args[0]}
	n, _ := strconv.Atoi(args[2])
	var held []*os.File
	granted, denied, firstDenial := 0, 0, ""
	var failures []string
	for range n {
		f, _, err := c.Socket(ctx, &Request{Proto: inet.TCP, Address: mustAddr(args[1])})
		if err != nil {
			if !errors.Is(err, ErrDenied) {
				failures = append(failures, err.Error())
				continue
			}
			if denied == 0 {
				firstDenial = err.Error()
			}
			denied++
			continue
		}
		granted++
		held = append(held, f)
	}
	if len(failures) > 0 {
		h.say("granted=%d denied=%d failed=%d (first: %s)", granted, denied, len(failures), failures[0])
	} else {
		h.say("granted=%d denied=%d", granted, denied)
	}
	h.say("first-denial %s", firstDenial)
	h.wait()
	for _, f := range held {
		f.Close()
	}
	return 0
}

// helperSelflisten: ADDR: a reuseport listener of our own, no broker
func helperSelflisten(ctx context.Context, h helperIO, args []string) int {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return serr
	}}
	ln, err := lc.Listen(ctx, "tcp", args[0])
	if err != nil {
		h.say("error %v", err)
		return 0
	}
	h.say("listening %s", ln.Addr())
	h.wait()
	ln.Close()
	return 0
}

// helperActivated: a server started the systemd way: serves on descriptor 3
func helperActivated(_ context.Context, h helperIO, _ []string) int {
	pid, _ := strconv.Atoi(os.Getenv("LISTEN_PID"))
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if pid != os.Getpid() || n < 1 {
		fmt.Fprintf(os.Stderr, "activated: LISTEN_PID=%d (we are %d) LISTEN_FDS=%d\n", pid, os.Getpid(), n)
		return 3
	}
	f := os.NewFile(3, "listen")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "activated:", err)
		return 3
	}
	name := os.Getenv("LISTEN_FDNAMES")
	for {
		c, err := ln.Accept()
		if err != nil {
			return 0
		}
		fmt.Fprintf(c, "uid=%d pid=%d listen_pid=%d name=%s\n", os.Getuid(), os.Getpid(), pid, name)
		c.Close()
	}
}

// helperDying: SOCK ADDR: ask for a socket, then die before reading the answer
func helperDying(_ context.Context, h helperIO, args []string) int {
	conn, err := net.Dial("unixpacket", args[0])
	if err != nil {
		return 1
	}
	fmt.Fprintf(conn, `{"op":"socket","proto":"tcp","address":%q}`, args[1])
	unix.Kill(os.Getpid(), unix.SIGKILL)
	return 0
}

// helperNofile: SOCK ADDR: ask for a socket with no descriptor free to receive it
func helperNofile(ctx context.Context, h helperIO, args []string) int {
	c := &Client{Path: args[0]}
	conn, err := c.dialBroker(ctx)
	if err != nil {
		h.say("error %v", err)
		return 1
	}
	defer conn.Close()
	// Fill every free descriptor up to a small limit, so the one
	// the broker sends has nowhere to go.
	unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 64, Max: 64})
	var fill []int
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		fill = append(fill, fd)
	}
	fmt.Fprintf(conn, `{"op":"socket","proto":"tcp","address":%q}`, args[1])
	buf, oob := make([]byte, 4096), make([]byte, 64)
	n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
	fds := rights(oob[:oobn])
	for _, fd := range fill {
		unix.Close(fd)
	}
	h.say("answer=%q fds=%d ctrunc=%v err=%v", buf[:n], len(fds), flags&unix.MSG_CTRUNC != 0, err)
	for _, fd := range fds {
		unix.Close(fd)
	}
	return 0
}

// helperHostile: SOCK ADDR: every bad thing a client can do; prints counts as JSON
func helperHostile(ctx context.Context, h helperIO, args []string) int {
	res := hostile(ctx, args[0], args[1])
	b, _ := json.Marshal(res)
	h.say("%s", b)
	return 0
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// serveIdentity answers each connection with the serving process's uid
// and pid.
func serveIdentity(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "uid=%d pid=%d\n", os.Getuid(), os.Getpid())
		c.Close()
	}
}

// hostileResult counts what the hostile client tried and got.
type hostileResult struct {
	Tried          int            `json:"tried"`           // requests and messages sent
	GrantedWrongly int            `json:"granted_wrongly"` // descriptors received for requests that must fail
	Kinds          map[string]int `json:"kinds"`           // tries per kind
	Refused        int            `json:"refused"`         // answered with a refusal
	HungUp         int            `json:"hung_up"`         // the broker closed the connection
	Notes          []string       `json:"notes,omitempty"`
}

// hostile runs as a uid the policy gives nothing on addr (it may have
// other grants) and tries every way in it can think of.
func hostile(_ context.Context, sock, addr string) hostileResult {
	h := &hostileClient{sock: sock, addr: addr, res: hostileResult{Kinds: map[string]int{}}}
	h.wrongUID()
	h.forged()
	h.oversized()
	h.malformed()
	h.fdAttached()
	h.flood()
	h.idleHold()
	h.abandon()
	// Our own list shows nothing of anyone else's.
	if c := h.dial(); c != nil {
		h.exchange(c, "list", []byte(`{"op":"list"}`), nil)
		c.Close()
	}
	return h.res
}

// hostileClient is the hostile helper's connection to the broker at sock,
// asking for addr (which the policy does not give it), and its tally.
type hostileClient struct {
	sock, addr string
	mu         sync.Mutex
	res        hostileResult
}

// exchange sends one raw message with optional ancillary data on conn and
// reads the answer: a descriptor, or an ok answer that is not a list of our
// own grants, is granted wrongly.
func (h *hostileClient) exchange(conn *net.UnixConn, kind string, msg, oob []byte) {
	h.mu.Lock()
	h.res.Tried++
	h.res.Kinds[kind]++
	h.mu.Unlock()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := conn.WriteMsgUnix(msg, oob, nil); err != nil {
		h.mu.Lock()
		h.res.HungUp++
		h.mu.Unlock()
		return
	}
	buf, roob := make([]byte, 64<<10), make([]byte, 256)
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, roob)
	fds := rights(roob[:oobn])
	for _, fd := range fds {
		unix.Close(fd)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case len(fds) > 0:
		h.res.GrantedWrongly++
		h.res.Notes = append(h.res.Notes, fmt.Sprintf("%s: got a descriptor for %q", kind, msg))
	case err != nil || n == 0:
		h.res.HungUp++
	default:
		var r Response
		wrong := json.Unmarshal(buf[:n], &r) == nil && r.OK && kind != "list"
		for _, g := range r.Grants {
			if g.UID != uint32(os.Getuid()) {
				wrong = true // someone else's grant shown
			}
		}
		if wrong {
			h.res.GrantedWrongly++
			h.res.Notes = append(h.res.Notes, fmt.Sprintf("%s: ok answer %q", kind, buf[:n]))
		} else {
			h.res.Refused++
		}
	}
}

// dial connects to the broker; nil (noted) when it cannot.
func (h *hostileClient) dial() *net.UnixConn {
	c, err := net.Dial("unixpacket", h.sock)
	if err != nil {
		h.mu.Lock()
		h.res.Notes = append(h.res.Notes, "dial: "+err.Error())
		h.mu.Unlock()
		return nil
	}
	return c.(*net.UnixConn)
}

// one sends one message on a connection of its own.
func (h *hostileClient) one(kind string, msg, oob []byte) {
	if c := h.dial(); c != nil {
		h.exchange(c, kind, msg, oob)
		c.Close()
	}
}

// req is the request for a listener on addr:80, with extra JSON fields.
func (h *hostileClient) req(extra string) []byte {
	return fmt.Appendf(nil, `{"op":"socket","proto":"tcp","address":%q,"port":80,"listen":true%s}`, h.addr, extra)
}

// wrongUID: the plain request, not ours, many times on one connection.
func (h *hostileClient) wrongUID() {
	if c := h.dial(); c != nil {
		for range 50 {
			h.exchange(c, "wrong-uid", h.req(""), nil)
		}
		c.Close()
	}
}

// forged: identity fields and operations a client may not send.
func (h *hostileClient) forged() {
	for _, extra := range []string{`,"uid":0`, `,"pid":1`, `,"gid":0`, `,"peer":{"uid":0}`} {
		h.one("forged", h.req(extra), nil)
	}
	h.one("forged", []byte(`{"op":"grant","proto":"tcp","address":"127.0.0.1","port":80}`), nil)
	h.one("forged", []byte(`{"op":"socket","proto":"tcp","address":"127.0.0.1","port":80,"listen":true,"op":"list"}`), nil)
}

// oversized: messages past MaxRequest; the broker hangs up.
func (h *hostileClient) oversized() {
	for _, size := range []int{MaxRequest + 1, 64 << 10, 200 << 10} {
		big := append(h.req(`,"group":"`), []byte(strings.Repeat("x", size))...)
		h.one("oversized", append(big, '"', '}'), nil)
	}
}

// malformed: random bytes and truncated JSON.
func (h *hostileClient) malformed() {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		var msg []byte
		if i%2 == 0 {
			msg = make([]byte, 1+rng.IntN(300))
			for j := range msg {
				msg[j] = byte(rng.UintN(256))
			}
		} else {
			full := h.req("")
			msg = full[:rng.IntN(len(full))+1]
		}
		h.one("malformed", msg, nil)
	}
}

// fdAttached: descriptors sent to the broker: our own socket, and a pile
// of them.
func (h *hostileClient) fdAttached() {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return
	}
	h.one("fd-attached", h.req(""), unix.UnixRights(s))
	fds := make([]int, 200)
	for i := range fds {
		fds[i] = s
	}
	h.one("fd-attached", h.req(""), unix.UnixRights(fds...))
	unix.Close(s)
}

// flood: many connections at once, each with many requests in a row.
func (h *hostileClient) flood() {
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c := h.dial(); c != nil {
				for range 20 {
					h.exchange(c, "flood", h.req(""), nil)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
}

// idleHold: connections that say nothing and hold a slot, while another
// asks.
func (h *hostileClient) idleHold() {
	var idle []net.Conn
	for range 40 {
		if c, err := net.Dial("unixpacket", h.sock); err == nil {
			idle = append(idle, c)
		}
	}
	h.one("after-idle", h.req(""), nil)
	for _, c := range idle {
		c.Close()
	}
}

// abandon: half a hand-over, sending and closing without reading, many
// times.
func (h *hostileClient) abandon() {
	for range 50 {
		if c := h.dial(); c != nil {
			h.res.Tried++
			h.res.Kinds["abandoned"]++
			c.Write(h.req(""))
			c.Close()
		}
	}
}
