package socktab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/netns"
)

var aLongTimeAgo = time.Unix(1, 0)

func snapshot(ctx context.Context, q Query) (*Table, error) {
	if len(q.Namespaces) > 0 {
		return snapshotNamespaces(ctx, q)
	}
	t := &Table{Source: "netlink"}
	// The owner pass (a BPF iterator over every process's descriptors)
	// does not depend on the dump: it runs beside it.
	var files ownerFiles
	if q.Owners && q.ProcRoot == "/proc" {
		files.start()
	}
	socks, err := dumpNetlink(ctx, q)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			files.abandon()
			return nil, ctxErr
		}
		t.Source = "procfs"
		t.Notes = append(t.Notes, fmt.Sprintf("%v; read %s/net instead", err, q.ProcRoot))
		socks, err = readProcNet(q)
		if err != nil {
			files.abandon()
			return nil, err
		}
		if q.TCP {
			t.Notes = append(t.Notes, "procfs does not list bound-only TCP sockets (state bound)")
		}
	}
	if t.Source == "netlink" {
		var note string
		if socks, note = addBoundOnly(socks, q, nil); note != "" {
			t.Notes = append(t.Notes, note)
		}
	}
	t.Sockets = filter(socks, q)
	finish(ctx, t, q, &files)
	return t, nil
}

// finish adds owners and options to t's sockets as q asks. files, when
// started, holds the BPF iterator's list of socket descriptors; without it
// (or when the iterator cannot run) every /proc/PID/fd is read.
func finish(ctx context.Context, t *Table, q Query, files *ownerFiles) {
	socks := t.Sockets
	if !q.Options {
		for i := range socks {
			o := &socks[i].Options
			o.ReuseAddr.Reason = reasonNotAsked
			o.ReusePort.Reason = reasonNotAsked
			o.V6Only.Reason = reasonNotAsked
			o.Device.Reason = reasonNotAsked
			if !o.Freebind.Known {
				o.Freebind.Reason = reasonNotAsked
			}
			if !o.BindAddressNoPort.Known {
				o.BindAddressNoPort.Reason = reasonNotAsked
			}
		}
	}
	if !q.Owners {
		return
	}
	var (
		hits   []ownerHit
		denied int
		notes  []string
	)
	if fl, err := files.wait(); err == nil {
		hits = joinFiles(fl, socks)
	} else {
		if files.started {
			notes = append(notes, fmt.Sprintf("owners found by reading every /proc/PID/fd (%v)", err))
		}
		want := make(map[uint64]int, len(socks))
		for i := range socks {
			if socks[i].Inode != 0 {
				want[socks[i].Inode] = i
			}
		}
		var more []string
		hits, denied, more = findOwners(q.ProcRoot, want)
		notes = append(notes, more...)
	}
	t.Notes = append(t.Notes, notes...)
	attachOwners(q.ProcRoot, socks, hits)
	if q.Options {
		noOwner := "no owning process found"
		if denied > 0 {
			noOwner = fmt.Sprintf("owner unknown: descriptors of %d processes not readable (permission denied)", denied)
		}
		readOptions(ctx, socks, fromKernel(socks, q.OptionsFrom), noOwner)
	}
}

// filter keeps the sockets q asks for, in place, moving only what follows a
// dropped socket. The kernel already applied the filters to a netlink dump;
// procfs needs them, and checking is cheap.
func filter(socks []Socket, q Query) []Socket {
	n := 0
	for i := range socks {
		s := &socks[i]
		if (s.Proto == inet.TCP && !q.TCP) || (s.Proto == inet.UDP && !q.UDP) || !q.States.Has(s.State) ||
			(q.LocalPort != 0 && s.Local.Port() != q.LocalPort) ||
			(q.RemotePort != 0 && s.Remote.Port() != q.RemotePort) ||
			(q.Family != 0 && s.Family != q.Family) || !q.Filter.Match(s) {
			continue
		}
		if n != i {
			socks[n] = *s
		}
		n++
	}
	clear(socks[n:]) // drop references held by the removed tail
	return socks[:n]
}

// readProcNet reads /proc/net/{tcp,tcp6,udp,udp6} of the calling thread's
// network namespace (/proc/thread-self/net; PROC/net when the root has no
// thread-self, as in a fixture). A missing file (IPv6 disabled) is no
// socket, not an error.
func readProcNet(q Query) ([]Socket, error) {
	dir := q.ProcRoot + "/thread-self/net"
	if _, err := os.Stat(dir); err != nil {
		dir = q.ProcRoot + "/net"
	}
	var out []Socket
	for _, f := range []struct {
		on     bool
		name   string
		proto  inet.Proto
		family inet.Family
	}{
		{q.TCP, "tcp", inet.TCP, inet.IPv4}, {q.TCP, "tcp6", inet.TCP, inet.IPv6},
		{q.UDP, "udp", inet.UDP, inet.IPv4}, {q.UDP, "udp6", inet.UDP, inet.IPv6},
	} {
		if !f.on {
			continue
		}
		path := dir + "/" + f.name
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out, err = parseProcNet(b, f.proto, f.family, binary.NativeEndian, out)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return out, nil
}

// maxNamespaceDumps bounds the namespaces dumped at once: each holds a
// locked OS thread and a netlink socket for the length of its dump.
const maxNamespaceDumps = 8

// snapshotNamespaces dumps each of q.Namespaces from a thread inside it,
// concurrently, then filters and finishes the union once, so one /proc scan
// finds the owners of every namespace's sockets (socket inodes are unique
// across namespaces).
func snapshotNamespaces(ctx context.Context, q Query) (*Table, error) {
	t := &Table{Source: "netlink", Namespaces: q.Namespaces}
	var files ownerFiles // every process's socket descriptors, beside the dumps
	if q.Owners && q.ProcRoot == "/proc" {
		files.start()
	}
	per := make([][]Socket, len(q.Namespaces))
	inodes := make([]uint64, len(q.Namespaces)) // as found inside each
	errs := make([]error, len(q.Namespaces))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxNamespaceDumps)
	for i, ns := range q.Namespaces {
		g.Go(func() error {
			errs[i] = netns.Do(ns.Path, func() error {
				// The namespace entered, not the one the caller named:
				// a name can be given to another namespace meanwhile,
				// and the descriptors' sockets are matched by this.
				var here unix.Stat_t
				if err := unix.Stat("/proc/thread-self/ns/net", &here); err != nil {
					return os.NewSyscallError("stat /proc/thread-self/ns/net", err)
				}
				if ns.Inode != 0 && here.Ino != ns.Inode {
					return fmt.Errorf("%s is namespace %d now, not %d", ns.Path, here.Ino, ns.Inode)
				}
				inodes[i] = here.Ino
				socks, err := dumpNetlink(gctx, q)
				for j := range socks {
					socks[j].NetNS = here.Ino
				}
				per[i] = socks
				return err
			})
			return nil
		})
	}
	_ = g.Wait() // each namespace's error is in errs; the goroutines return nil
	if err := ctx.Err(); err != nil {
		files.abandon()
		return nil, err
	}
	var all []Socket
	read := map[uint64]bool{} // the namespaces dumped, by inode
	for i, socks := range per {
		if errs[i] != nil {
			t.Notes = append(t.Notes, fmt.Sprintf("namespace %s not read: %v", q.Namespaces[i].Label(), errs[i]))
			continue
		}
		all = append(all, socks...)
		read[inodes[i]] = true
	}
	if len(read) == 0 {
		files.abandon()
		return nil, fmt.Errorf("no namespace could be read: %s", t.Notes[0])
	}
	// One pass over every process's descriptors finds the bound-only
	// sockets of all the namespaces read, where their dumps cannot.
	var note string
	if all, note = addBoundOnly(all, q, read); note != "" {
		t.Notes = append(t.Notes, note)
	}
	t.Sockets = filter(all, q)
	finish(ctx, t, q, &files)
	return t, nil
}
