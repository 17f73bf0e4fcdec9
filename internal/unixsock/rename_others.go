//go:build unix && !linux && !darwin

package unixsock

// renameNoReplace: these systems have no rename that refuses to replace.
func renameNoReplace(from, to string) error { return errNoExclusiveRename }
