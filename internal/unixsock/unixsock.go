package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// NotSocketError is something other than a Unix socket at Path: Listen
// refuses to replace it.
type NotSocketError struct {
	Path string
	Mode fs.FileMode
}

func (e *NotSocketError) Error() string {
	return fmt.Sprintf("%s is %s, not a unix socket", e.Path, describeType(e.Mode))
}

// describeType names the kind of file mode m is, with its article.
func describeType(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "a regular file"
	case fs.ModeDir:
		return "a directory"
	case fs.ModeSymlink:
		return "a symbolic link"
	case fs.ModeNamedPipe:
		return "a named pipe"
	case fs.ModeDevice | fs.ModeCharDevice:
		return "a character device"
	case fs.ModeDevice:
		return "a block device"
	}
	return fmt.Sprintf("a file of type %v", m.Type())
}

// Check returns a *NotSocketError when something other than a Unix socket
// is at path; nothing there, or a socket, is nil. It is the check Listen
// makes, for a command to refuse a bad path before it starts.
func Check(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode().Type() != fs.ModeSocket:
		return &NotSocketError{Path: path, Mode: fi.Mode()}
	}
	return nil
}
