package socktab

import (
	"fmt"
	"strconv"
	"strings"
)

// State is the kernel's socket state number (include/net/tcp_states.h).
// UDP sockets use Established (connected) and Close (bound, unconnected).
type State uint8

const (
	Established   State = 1
	SynSent       State = 2
	SynRecv       State = 3
	FinWait1      State = 4
	FinWait2      State = 5
	TimeWait      State = 6
	Close         State = 7
	CloseWait     State = 8
	LastAck       State = 9
	Listen        State = 10
	Closing       State = 11
	NewSynRecv    State = 12
	BoundInactive State = 13 // TCP_BOUND_INACTIVE: bound, neither listening nor connected (Linux 6.8+)
	numStates           = 14
)

// stateNames are the names users type and read (ss's names where ss has
// one; "bound" for BoundInactive, "unconn" for an unconnected UDP socket is
// chosen by the caller from Close).
var stateNames = [numStates]string{
	Established:   "established",
	SynSent:       "syn-sent",
	SynRecv:       "syn-recv",
	FinWait1:      "fin-wait-1",
	FinWait2:      "fin-wait-2",
	TimeWait:      "time-wait",
	Close:         "close",
	CloseWait:     "close-wait",
	LastAck:       "last-ack",
	Listen:        "listen",
	Closing:       "closing",
	NewSynRecv:    "new-syn-recv",
	BoundInactive: "bound",
}

func (s State) String() string {
	if s > 0 && s < numStates {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// ParseState parses a state name as String prints it (case-insensitive;
// "unconn" is Close, "bound-inactive" is BoundInactive).
func ParseState(name string) (State, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	switch n {
	case "unconn", "unconnected":
		return Close, nil
	case "bound-inactive", "bound_inactive":
		return BoundInactive, nil
	}
	n = strings.ReplaceAll(n, "_", "-")
	for s := State(1); s < numStates; s++ {
		if stateNames[s] == n {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown socket state %q (want one of %s, unconn)", name, strings.Join(stateNames[1:], ", "))
}

// StateSet is a set of states, bit s for State s, the layout of the kernel's
// idiag_states mask.
type StateSet uint32

// AllStates is every state, bound-only TCP sockets included.
const AllStates StateSet = 1<<numStates - 2

// States returns the set of the given states.
func States(states ...State) StateSet {
	var set StateSet
	for _, s := range states {
		set |= 1 << s
	}
	return set
}

// Has reports whether s is in the set.
func (set StateSet) Has(s State) bool { return set&(1<<s) != 0 }
