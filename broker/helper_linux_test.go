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
func hostile(ctx context.Context, sock, addr string) hostileResult {
	res := hostileResult{Kinds: map[string]int{}}
	var mu sync.Mutex
	// send sends one raw message with optional ancillary data on a fresh
	// or given connection and reads the answer.
	exchange := func(conn *net.UnixConn, kind string, msg, oob []byte) {
		mu.Lock()
		res.Tried++
		res.Kinds[kind]++
		mu.Unlock()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := conn.WriteMsgUnix(msg, oob, nil); err != nil {
			mu.Lock()
			res.HungUp++
			mu.Unlock()
			return
		}
		buf, roob := make([]byte, 64<<10), make([]byte, 256)
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, roob)
		fds := rights(roob[:oobn])
		for _, fd := range fds {
			unix.Close(fd)
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case len(fds) > 0:
			res.GrantedWrongly++
			res.Notes = append(res.Notes, fmt.Sprintf("%s: got a descriptor for %q", kind, msg))
		case err != nil || n == 0:
			res.HungUp++
		default:
			var r Response
			wrong := json.Unmarshal(buf[:n], &r) == nil && r.OK && kind != "list"
			for _, g := range r.Grants {
				if g.UID != uint32(os.Getuid()) {
					wrong = true // someone else's grant shown
				}
			}
			if wrong {
				res.GrantedWrongly++
				res.Notes = append(res.Notes, fmt.Sprintf("%s: ok answer %q", kind, buf[:n]))
			} else {
				res.Refused++
			}
		}
	}
	dial := func() *net.UnixConn {
		c, err := net.Dial("unixpacket", sock)
		if err != nil {
			mu.Lock()
			res.Notes = append(res.Notes, "dial: "+err.Error())
			mu.Unlock()
			return nil
		}
		return c.(*net.UnixConn)
	}
	one := func(kind string, msg, oob []byte) {
		if c := dial(); c != nil {
			exchange(c, kind, msg, oob)
			c.Close()
		}
	}
	req := func(extra string) []byte {
		return fmt.Appendf(nil, `{"op":"socket","proto":"tcp","address":%q,"port":80,"listen":true%s}`, addr, extra)
	}

	// Not ours: the plain request, many times, on one connection.
	if c := dial(); c != nil {
		for range 50 {
			exchange(c, "wrong-uid", req(""), nil)
		}
		c.Close()
	}
	// Forged identity fields and operations.
	for _, extra := range []string{`,"uid":0`, `,"pid":1`, `,"gid":0`, `,"peer":{"uid":0}`} {
		one("forged", req(extra), nil)
	}
	one("forged", []byte(`{"op":"grant","proto":"tcp","address":"127.0.0.1","port":80}`), nil)
	one("forged", []byte(`{"op":"socket","proto":"tcp","address":"127.0.0.1","port":80,"listen":true,"op":"list"}`), nil)
	// Oversized messages: the broker hangs up.
	for _, size := range []int{MaxRequest + 1, 64 << 10, 200 << 10} {
		big := append(req(`,"group":"`), []byte(strings.Repeat("x", size))...)
		one("oversized", append(big, '"', '}'), nil)
	}
	// Malformed: random bytes and truncated JSON.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		var msg []byte
		if i%2 == 0 {
			msg = make([]byte, 1+rng.IntN(300))
			for j := range msg {
				msg[j] = byte(rng.UintN(256))
			}
		} else {
			full := req("")
			msg = full[:rng.IntN(len(full))+1]
		}
		one("malformed", msg, nil)
	}
	// Descriptors sent to the broker: our own socket, and a pile of them.
	if s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0); err == nil {
		one("fd-attached", req(""), unix.UnixRights(s))
		fds := make([]int, 200)
		for i := range fds {
			fds[i] = s
		}
		one("fd-attached", req(""), unix.UnixRights(fds...))
		unix.Close(s)
	}
	// Floods: many connections at once, and many requests in a row.
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c := dial(); c != nil {
				for range 20 {
					exchange(c, "flood", req(""), nil)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	// Connections that say nothing and hold a slot.
	var idle []net.Conn
	for range 40 {
		if c, err := net.Dial("unixpacket", sock); err == nil {
			idle = append(idle, c)
		}
	}
	one("after-idle", req(""), nil)
	for _, c := range idle {
		c.Close()
	}
	// Half a hand-over: send and close without reading, many times.
	for range 50 {
		if c := dial(); c != nil {
			res.Tried++
			res.Kinds["abandoned"]++
			c.Write(req(""))
			c.Close()
		}
	}
	// Our own list shows nothing of anyone else's.
	if c := dial(); c != nil {
		exchange(c, "list", []byte(`{"op":"list"}`), nil)
		c.Close()
	}
	return res
}
