//go:build unix

package unixsock

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tuple-net/tuple/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// staleSocket leaves a socket file at path that nothing listens on, as a
// server killed with SIGKILL does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

// TestListenLeavesWhatIsNotASocket: Listen over a regular file, an empty
// directory, a named pipe or a symbolic link (dangling, to a file, to a
// stale socket) fails with a NotSocketError naming the path and what is
// there, and leaves it as it was.
func TestListenLeavesWhatIsNotASocket(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	staleSocket(t, stale)
	file := filepath.Join(dir, "target")
	if err := os.WriteFile(file, []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		make       func(path string) error
	}{
		{"file", "is a regular file, not a unix socket", func(p string) error { return os.WriteFile(p, []byte("x\n"), 0o644) }},
		{"dir", "is a directory, not a unix socket", func(p string) error { return os.Mkdir(p, 0o755) }},
		{"fifo", "is a named pipe, not a unix socket", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"dangling", "is a symbolic link, not a unix socket", func(p string) error { return os.Symlink(filepath.Join(dir, "nothing"), p) }},
		{"to-file", "is a symbolic link, not a unix socket", func(p string) error { return os.Symlink(file, p) }},
		{"to-stale-socket", "is a symbolic link, not a unix socket", func(p string) error { return os.Symlink(stale, p) }},
	} {
		path := filepath.Join(dir, tc.name)
		if err := tc.make(path); err != nil {
			t.Fatal(err)
		}
		before, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(path); err == nil || err.Error() != path+" "+tc.want {
			t.Errorf("Check(%s): %v, want %q", tc.name, err, path+" "+tc.want)
		}
		ln, err := Listen("unix", path)
		if err == nil {
			ln.Close()
		}
		var nse *NotSocketError
		if !errors.As(err, &nse) || nse.Path != path || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Listen over %s: %v, want a NotSocketError %q", tc.name, err, tc.want)
		}
		after, err := os.Lstat(path)
		if err != nil || !os.SameFile(before, after) {
			t.Errorf("Listen over %s: the path was removed or replaced (%v)", tc.name, err)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me\n" {
		t.Errorf("the file a symbolic link pointed to: %q, %v", b, err)
	}
	if fi, err := os.Lstat(stale); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("the stale socket a symbolic link pointed to: %v, %v", fi, err)
	}
}

// TestListenReplacesStaleSocket: a socket file nothing listens on is
// replaced, and no file is left beside it.
func TestListenReplacesStaleSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	staleSocket(t, path)
	if err := Check(path); err != nil {
		t.Errorf("Check on a stale socket: %v", err)
	}
	ln, err := Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the new socket: %v", err)
	}
	c.Close()
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory after replacing the stale socket: %v, want s.sock alone", ents)
	}
}

// TestListenLeavesLiveSocket: a socket a process listens on is an error
// wrapping EADDRINUSE, and the process keeps it.
func TestListenLeavesLiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	live, err := Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if ln, err := Listen("unix", path); !errors.Is(err, syscall.EADDRINUSE) {
		if err == nil {
			ln.Close()
		}
		t.Fatalf("Listen on a live socket: %v, want EADDRINUSE", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the live socket after the refused Listen: %v", err)
	}
	c.Close()
}

// TestRemoveSocketLeavesNewcomer: when something else took the path after
// the stale socket was looked at, removeSocket leaves it there and fails,
// with the exclusive rename and without it.
func TestRemoveSocketLeavesNewcomer(t *testing.T) {
	for _, exclusive := range []bool{true, false} {
		if !exclusive {
			renameExclusive = func(string, string) error { return errNoExclusiveRename }
			defer func() { renameExclusive = renameNoReplace }()
		}
		for _, newcomer := range []string{"file", "symlink"} {
			dir := t.TempDir()
			path := filepath.Join(dir, "s.sock")
			staleSocket(t, path)
			was, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			// The race, made certain: the socket goes, something
			// else comes (often with the socket's inode number).
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if newcomer == "file" {
				err = os.WriteFile(path, []byte("newcomer\n"), 0o644)
			} else {
				err = os.Symlink("/", path)
			}
			if err != nil {
				t.Fatal(err)
			}
			before, _ := os.Lstat(path)
			if err := removeSocket(path, was); err == nil || !strings.Contains(err.Error(), "changed while") {
				t.Errorf("exclusive rename %v: removeSocket over a %s: %v, want 'changed while'", exclusive, newcomer, err)
			}
			if after, err := os.Lstat(path); err != nil || !os.SameFile(before, after) {
				t.Errorf("exclusive rename %v: the %s was removed or moved: %v", exclusive, newcomer, err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("exclusive rename %v: directory after: %v, want s.sock alone", exclusive, ents)
			}
		}
	}
}

// TestRemoveSocketWithoutExclusiveRename: where the system has no rename
// that refuses to replace, the stale socket is still removed.
func TestRemoveSocketWithoutExclusiveRename(t *testing.T) {
	renameExclusive = func(string, string) error { return errNoExclusiveRename }
	defer func() { renameExclusive = renameNoReplace }()
	path := filepath.Join(t.TempDir(), "s.sock")
	staleSocket(t, path)
	ln, err := Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}
