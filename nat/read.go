package nat

import (
	"context"
	"net/netip"
)

// Snapshot is what the NAT budget is computed from, read at one moment.
type Snapshot struct {
	Rules      []Rule
	Flows      []Flow
	Counters   Counters
	Interfaces map[string][]netip.Addr
}

// Counters are conntrack's failure counters summed over CPUs: a new
// connection whose translated tuple clashes is dropped at confirmation and
// counted in InsertFailed.
type Counters struct {
	InsertFailed uint64 `json:"insert_failed"`
	Drop         uint64 `json:"drop"`
	EarlyDrop    uint64 `json:"early_drop"`
}

// Read takes the NAT rules, the conntrack table and its counters from the
// kernel of the caller's network namespace. It needs CAP_NET_ADMIN.
func Read(ctx context.Context) (Snapshot, error) { return read(ctx) }

// Budgets is Budgets over the snapshot.
func (s Snapshot) Budgets() []Budget { return Budgets(s.Rules, s.Flows, s.Interfaces) }
