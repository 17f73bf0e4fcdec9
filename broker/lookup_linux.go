package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"time"
)

// lookupID resolves a socket file's owner (isUser) or group: a number as
// it is, a name through the C library where tuple links it, else through
// getent(1). A static build (CGO_ENABLED=0, as docs/deploy builds it) has
// only Go's reader of /etc/passwd and /etc/group, which does not see users
// that come from NSS (LDAP, sssd); getent asks NSS for them.
func lookupID(name string, isUser bool) (int, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return int(n), nil
	}
	what, db := "socket group", "group"
	var id string
	var err error
	if isUser {
		what, db = "socket owner", "passwd"
		var u *user.User
		if u, err = user.Lookup(name); err == nil {
			id = u.Uid
		}
	} else {
		var g *user.Group
		if g, err = user.LookupGroup(name); err == nil {
			id = g.Gid
		}
	}
	if err != nil {
		var unknownUser user.UnknownUserError
		var unknownGroup user.UnknownGroupError
		if !errors.As(err, &unknownUser) && !errors.As(err, &unknownGroup) {
			return 0, fmt.Errorf("%s %q: %v", what, name, err)
		}
		n, gerr := getentID(db, name)
		if gerr != nil {
			return 0, fmt.Errorf("%s %q: %v (getent: %v)", what, name, err, gerr)
		}
		return n, nil
	}
	n, err := strconv.Atoi(id)
	if err != nil {
		return 0, fmt.Errorf("%s %q: id %q is not a number", what, name, id)
	}
	return n, nil
}

// getentID asks getent(1) for name in db (passwd or group) and returns
// its numeric id.
func getentID(db, name string) (int, error) {
	if name == "" || strings.HasPrefix(name, "-") {
		return 0, fmt.Errorf("%q is not a name getent looks up", name) // not every getent takes "--"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "getent", db, name).Output()
	if err != nil {
		return 0, err
	}
	return parseGetentID(out)
}

// parseGetentID reads the id (the third field) of getent's first line,
// "name:password:id:...".
func parseGetentID(out []byte) (int, error) {
	line, _, _ := bytes.Cut(out, []byte("\n"))
	f := bytes.Split(line, []byte(":"))
	if len(f) < 3 {
		return 0, fmt.Errorf("unexpected getent output %q", line)
	}
	n, err := strconv.ParseUint(string(f[2]), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("unexpected getent id %q", f[2])
	}
	return int(n), nil
}
