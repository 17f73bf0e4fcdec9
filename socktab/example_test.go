package socktab_test

import (
	"context"
	"fmt"

	"github.com/tuple-net/tuple/socktab"
)

// Who holds local port 8080, with the processes and their reuse options.
func ExampleSnapshot() {
	t, err := socktab.Snapshot(context.Background(), socktab.Query{LocalPort: 8080, Options: true})
	if err != nil {
		fmt.Println(err) // on macOS, FreeBSD, Windows: wraps inet.ErrUnsupported
		return
	}
	for _, s := range t.Sockets {
		fmt.Println(s.Proto, s.State, s.Local, s.Remote, s.Owners)
		if s.Options.ReusePort.Known {
			fmt.Println("  SO_REUSEPORT:", s.Options.ReusePort.Value)
		} else {
			fmt.Println("  SO_REUSEPORT unknown:", s.Options.ReusePort.Reason)
		}
	}
}
