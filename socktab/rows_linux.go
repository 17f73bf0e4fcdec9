package socktab

import (
	"context"
	"fmt"
)

func snapshotRows(ctx context.Context, q Query) (*RowTable, error) {
	if needsBoundOnlyFinder(q) {
		// The dump lacks them: the table, with its finder, in rows.
		t, err := snapshot(ctx, q)
		if err != nil {
			return nil, err
		}
		rt := &RowTable{Rows: make([]Row, len(t.Sockets)), Source: t.Source, Notes: t.Notes}
		for i := range t.Sockets {
			rt.Rows[i] = RowOf(&t.Sockets[i])
		}
		return rt, nil
	}
	rows, err := dumpRows(ctx, q)
	if err == nil {
		return &RowTable{Rows: filterRows(rows, q), Source: "netlink"}, nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, ctxErr
	}
	// procfs, as Snapshot falls back to it, with the same notes.
	t := &RowTable{Source: "procfs", Notes: []string{fmt.Sprintf("%v; read %s/net instead", err, q.ProcRoot)}}
	socks, err := readProcNet(q)
	if err != nil {
		return nil, err
	}
	if q.TCP {
		t.Notes = append(t.Notes, "procfs does not list bound-only TCP sockets (state bound)")
	}
	socks = filter(socks, q)
	t.Rows = make([]Row, len(socks))
	for i := range socks {
		t.Rows[i] = RowOf(&socks[i])
	}
	return t, nil
}
