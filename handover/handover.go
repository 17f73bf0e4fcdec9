package handover

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

var (
	// ErrNoOffer is wrapped by Take's error when no process serves
	// hand-over at the path: the caller opens its own listeners.
	ErrNoOffer = errors.New("no process offers its listeners there")
	// ErrNotSupported is wrapped on platforms without SCM_RIGHTS.
	ErrNotSupported = errors.New("hand-over not supported")
)

// magic starts the offer message.
const magic = "tuple-handover/1"

// maxListeners bounds one offer (the kernel passes at most 253
// descriptors in one message, SCM_MAX_FD).
const maxListeners = 253

// encodeOffer is the header of an offer: the magic, the count, then one
// "network address" line per listener, in order.
func encodeOffer(names []string) []byte {
	var b strings.Builder
	b.WriteString(magic)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(names)))
	b.WriteByte('\n')
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// parseOffer decodes an offer header; it checks the count against the
// number of descriptors received.
func parseOffer(b []byte, fds int) ([]string, error) {
	lines := strings.Split(string(b), "\n")
	if len(lines) < 2 || lines[len(lines)-1] != "" {
		return nil, fmt.Errorf("handover: malformed offer (%d bytes)", len(b))
	}
	lines = lines[:len(lines)-1]
	head, ok := strings.CutPrefix(lines[0], magic+" ")
	if !ok {
		return nil, fmt.Errorf("handover: offer does not start with %q", magic)
	}
	n, err := strconv.Atoi(head)
	if err != nil || n < 1 || n > maxListeners {
		return nil, fmt.Errorf("handover: offer count %q: want 1-%d", head, maxListeners)
	}
	if n != len(lines)-1 || n != fds {
		return nil, fmt.Errorf("handover: offer names %d listeners in %d lines with %d descriptors", n, len(lines)-1, fds)
	}
	return lines[1:], nil
}
