//go:build unix

package handover

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/unixsock"
)

// Takeover is the successor's side of one hand-over: the listeners it
// received, in the order the old process offered them.
type Takeover struct {
	Listeners []net.Listener
	conn      *net.UnixConn
}

// Take connects to path and receives the listening sockets of the process
// serving hand-over there. When nothing listens at path the error wraps
// ErrNoOffer. The caller starts accepting on t.Listeners, then calls Ready.
func Take(ctx context.Context, path string) (*Takeover, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("take over from %s: %w (%w)", path, ErrNoOffer, err)
		}
		return nil, fmt.Errorf("take over from %s: %w", path, err)
	}
	conn := c.(*net.UnixConn)
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetReadDeadline(dl); err != nil {
			conn.Close()
			return nil, fmt.Errorf("take over from %s: %w", path, err)
		}
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*maxListeners))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("take over from %s: read offer: %w", path, err)
	}
	files, err := parseRights(oob[:oobn])
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("take over from %s: %w", path, err)
	}
	defer func() {
		for _, f := range files {
			f.Close() // FileListener holds its own descriptor
		}
	}()
	if _, err := parseOffer(buf[:n], len(files)); err != nil {
		conn.Close()
		return nil, err
	}
	t := &Takeover{conn: conn}
	for _, f := range files {
		l, err := net.FileListener(f)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("take over from %s: %s is not a listening socket: %w", path, f.Name(), err)
		}
		t.Listeners = append(t.Listeners, l)
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		t.Close()
		return nil, fmt.Errorf("take over from %s: %w", path, err)
	}
	return t, nil
}

// parseRights returns the descriptors of SCM_RIGHTS messages in oob.
func parseRights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), fmt.Sprintf("received listener %d", len(files))))
		}
	}
	return files, nil
}

// Ready tells the old process that the listeners are being accepted on. It
// returns once the old process has stopped accepting and freed the path (or
// ctx ended): Listen on it then.
func (t *Takeover) Ready(ctx context.Context) error {
	defer t.conn.Close()
	// The deadline wakes the read below; it fails only once the conn is
	// closed, which wakes it as well.
	stop := context.AfterFunc(ctx, func() { _ = t.conn.SetReadDeadline(time.Now()) })
	defer stop()
	if _, err := t.conn.Write([]byte("ready\n")); err != nil {
		return fmt.Errorf("handover: tell the old process: %w", err)
	}
	line, err := bufio.NewReader(t.conn).ReadString('\n')
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("handover: wait for the old process to stop: %w", err)
	}
	if line != "done\n" {
		return fmt.Errorf("handover: old process answered %q", line)
	}
	return nil
}

// Close gives up: the listeners are closed here; the old process, which
// still holds them, keeps serving.
func (t *Takeover) Close() error {
	var errs []error
	for _, l := range t.Listeners {
		errs = append(errs, l.Close())
	}
	errs = append(errs, t.conn.Close())
	return errors.Join(errs...)
}

// Offer is the running process's side: a Unix socket where a successor can
// take its listeners.
type Offer struct {
	path string
	ln   *net.UnixListener
	once sync.Once
}

// Listen binds the Unix socket path for hand-over. A socket file left by a
// process that is gone is replaced; one where a process still listens is
// an error wrapping EADDRINUSE. Anything else at path (a file, a
// directory, a symbolic link) is never removed: the error wraps a
// *unixsock.NotSocketError.
func Listen(path string) (*Offer, error) {
	ln, err := unixsock.Listen("unix", path)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("handover: a process already offers its listeners at %s: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("handover: listen on %s: %w", path, err)
	}
	return &Offer{path: path, ln: ln}, nil
}

// Serve waits for a successor, passes it lns (each must have a File method,
// as *net.TCPListener does) and waits until it is Ready. Then it calls
// stop, which must make the caller stop accepting and close its
// listeners, frees the path and returns nil. A successor that goes away
// before it is ready changes nothing: Serve waits for the next. When ctx
// ends first Serve returns ctx.Err().
func (o *Offer) Serve(ctx context.Context, lns []net.Listener, stop func()) error {
	if len(lns) < 1 || len(lns) > maxListeners {
		return fmt.Errorf("handover: %d listeners: want 1-%d", len(lns), maxListeners)
	}
	names := make([]string, len(lns))
	for i, l := range lns {
		names[i] = l.Addr().Network() + " " + l.Addr().String()
	}
	defer context.AfterFunc(ctx, func() { o.Close() })()
	for {
		c, err := o.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("handover: accept on %s: %w", o.path, err)
		}
		ok, err := o.offer(c, lns, names)
		if !ok {
			c.Close()
			if err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			continue // the successor failed: keep serving, wait for another
		}
		stop()
		// Free the path without unlinking it: the successor replaces
		// the file when it Listens.
		o.once.Do(func() {
			o.ln.SetUnlinkOnClose(false)
			o.ln.Close()
		})
		_, err = c.Write([]byte("done\n"))
		c.Close()
		if err != nil {
			return fmt.Errorf("handover: tell the successor: %w", err)
		}
		return nil
	}
}

// offer sends the listeners on c and waits for "ready".
func (o *Offer) offer(c *net.UnixConn, lns []net.Listener, names []string) (bool, error) {
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	fds := make([]int, 0, len(lns))
	for _, l := range lns {
		fl, ok := l.(interface{ File() (*os.File, error) })
		if !ok {
			return false, fmt.Errorf("handover: a %T has no descriptor to pass", l)
		}
		f, err := fl.File()
		if err != nil {
			return false, fmt.Errorf("handover: %s: %w", l.Addr(), err)
		}
		files = append(files, f)
		fds = append(fds, int(f.Fd()))
	}
	if _, _, err := c.WriteMsgUnix(encodeOffer(names), unix.UnixRights(fds...), nil); err != nil {
		return false, fmt.Errorf("handover: send listeners: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "ready\n" {
		return false, err
	}
	return true, nil
}

// Path is the Unix socket's path.
func (o *Offer) Path() string { return o.path }

// Close stops offering and removes the path, unless a successor took over.
func (o *Offer) Close() error {
	var err error
	o.once.Do(func() { err = o.ln.Close() })
	return err
}
