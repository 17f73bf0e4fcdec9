package socktab

import "bytes"

// parseSocketLink returns the inode of a /proc/PID/fd/N link target of the
// form "socket:[12345]".
func parseSocketLink(b []byte) (uint64, bool) {
	const prefix = "socket:["
	if len(b) < len(prefix)+2 || !bytes.HasPrefix(b, []byte(prefix)) || b[len(b)-1] != ']' {
		return 0, false
	}
	digits := b[len(prefix) : len(b)-1]
	if len(digits) == 0 || len(digits) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// parseDecimal parses a non-negative decimal number such as a pid or fd
// directory entry name.
func parseDecimal(s string) (int, bool) {
	if len(s) == 0 || len(s) > 9 {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// nextDirent splits the first struct linux_dirent64 off b and returns its
// name: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name NUL-terminated.
func nextDirent(b []byte) (string, []byte, bool) {
	const nameOff = 19
	if len(b) < nameOff+1 {
		return "", nil, false
	}
	reclen := int(hostOrder.Uint16(b[16:]))
	if reclen < nameOff+1 || reclen > len(b) {
		return "", nil, false
	}
	name := b[nameOff:reclen]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return string(name), b[reclen:], true
}
