package kernelvm

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// cpioWriter writes a cpio archive in the "newc" format, the one the
// kernel's initramfs unpacker reads (Documentation/driver-api/early-userspace/
// buffer-format.rst): a 110-byte ASCII header of hexadecimal fields, the
// NUL-terminated name, the data, each padded to four bytes, and a final
// TRAILER!!! entry.
type cpioWriter struct {
	w     io.Writer
	ino   uint32
	dirs  map[string]bool
	err   error
	done  bool
	total int64
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, dirs: map[string]bool{"": true, ".": true}}
}

// File modes the archive uses (S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
)

// clean makes name relative ("bin/x"), refusing names that leave the root.
func clean(name string) (string, error) {
	c := strings.TrimPrefix(path.Clean("/"+name), "/")
	if c == "" || strings.Contains(name, "\x00") {
		return "", fmt.Errorf("cpio: bad name %q", name)
	}
	return c, nil
}

// header writes one entry's header and name.
func (c *cpioWriter) header(name string, mode, size, rdevMajor, rdevMinor uint32) {
	if c.err != nil {
		return
	}
	if c.done {
		c.err = errors.New("cpio: write after close")
		return
	}
	c.ino++
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.write([]byte(h))
	c.write([]byte(name))
	c.write([]byte{0})
	c.pad()
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.total += int64(n)
	c.err = err
}

// pad writes NULs up to the next multiple of four bytes.
func (c *cpioWriter) pad() {
	if r := c.total % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// parents makes every missing directory above name.
func (c *cpioWriter) parents(name string) {
	dir := path.Dir(name)
	if c.dirs[dir] {
		return
	}
	c.parents(dir)
	c.dirs[dir] = true
	c.header(dir, modeDir|0o755, 0, 0, 0)
}

// Dir adds a directory (and its parents).
func (c *cpioWriter) Dir(name string, perm uint32) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	if c.dirs[n] {
		return c.err
	}
	c.parents(n)
	c.dirs[n] = true
	c.header(n, modeDir|perm&0o7777, 0, 0, 0)
	return c.err
}

// File adds a regular file with the given contents.
func (c *cpioWriter) File(name string, perm uint32, data []byte) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	if uint64(len(data)) > 1<<32-1 {
		return fmt.Errorf("cpio: %s: larger than 4 GiB", name)
	}
	c.parents(n)
	c.header(n, modeRegular|perm&0o7777, uint32(len(data)), 0, 0)
	c.write(data)
	c.pad()
	return c.err
}

// Symlink adds a symbolic link name -> target.
func (c *cpioWriter) Symlink(name, target string) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	c.parents(n)
	c.header(n, modeSymlink|0o777, uint32(len(target)), 0, 0)
	c.write([]byte(target))
	c.pad()
	return c.err
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	c.parents(n)
	c.header(n, modeChar|perm&0o7777, 0, major, minor)
	return c.err
}

// Close writes the trailer. It does not close the underlying writer.
func (c *cpioWriter) Close() error {
	if c.done {
		return c.err
	}
	c.header("TRAILER!!!", 0, 0, 0, 0)
	c.done = true
	return c.err
}
