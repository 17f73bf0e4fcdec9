//go:build unix

package unixsock

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// Listen binds path for network ("unix" or "unixpacket"). A socket file at
// path that nothing listens on any more (connecting is refused) is
// replaced. A live socket is an error wrapping EADDRINUSE; anything else at
// path is a *NotSocketError. Neither is touched.
func Listen(network, path string) (*net.UnixListener, error) {
	addr := &net.UnixAddr{Name: path, Net: network}
	ln, err := net.ListenUnix(network, addr)
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) || abstract(path) {
		return ln, err
	}
	if err := removeStale(network, path); err != nil {
		return nil, err
	}
	return net.ListenUnix(network, addr)
}

// abstract reports whether path names a Linux abstract socket, which has
// no file: one in use is live.
func abstract(path string) bool {
	return runtime.GOOS == "linux" && strings.HasPrefix(path, "@")
}

// removeStale removes the socket file at path if no process listens on it.
func removeStale(network, path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // gone meanwhile: bind again
	case err != nil:
		return err
	case fi.Mode().Type() != fs.ModeSocket:
		return &NotSocketError{Path: path, Mode: fi.Mode()}
	}
	c, err := net.Dial(network, path)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: a process listens on it: %w", path, syscall.EADDRINUSE)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether a process listens on it: %w", path, err)
	}
	return removeSocket(path, fi)
}

// removeSocket removes path if it is still the socket file was: something
// else may have taken the path since it was looked at. The path is first
// renamed aside, which is atomic, and what was moved is looked at: the
// socket is removed, anything else is put back (renames that never replace
// a file). Where the system has no such rename the path is looked at again
// just before it is removed.
func removeSocket(path string, was fs.FileInfo) error {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	aside := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".stale-"+hex.EncodeToString(b[:]))
	err := renameExclusive(path, aside)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // gone meanwhile
	case errors.Is(err, errNoExclusiveRename):
		now, err := os.Lstat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return err
		case !sameSocket(was, now):
			return changed(path)
		}
		return os.Remove(path)
	case err != nil:
		return fmt.Errorf("remove the stale socket %s: %w", path, err)
	}
	moved, err := os.Lstat(aside)
	if err == nil && sameSocket(was, moved) {
		return os.Remove(aside)
	}
	if err := renameExclusive(aside, path); err != nil {
		return fmt.Errorf("%w; what took its place is now at %s: %w", changed(path), aside, err)
	}
	return changed(path)
}

// sameSocket reports whether now is the socket file was: the inode
// number alone could be the same file's number reused.
func sameSocket(was, now fs.FileInfo) bool {
	return now.Mode().Type() == fs.ModeSocket && os.SameFile(was, now)
}

// changed is the error of a path that another process replaced while its
// stale socket was being removed.
func changed(path string) error {
	return fmt.Errorf("%s changed while its stale socket was being removed: left as it is", path)
}

// renameExclusive is renameNoReplace; tests take it away.
var renameExclusive = renameNoReplace

// errNoExclusiveRename is renameNoReplace's error where the system or the
// file system cannot rename without replacing.
var errNoExclusiveRename = errors.New("no rename that refuses to replace")
