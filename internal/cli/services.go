package cli

import (
	"context"
	"io"
	"net"
	"os"

	"github.com/tuple-net/tuple/broker"
)

// Services are the parts of tuple that the tuple binary leaves out and
// tupled (cmd/tupled, package internal/tupled) links in: the Prometheus
// endpoints of tuple exporter and tuple broker --metrics. Their libraries
// (client_golang with protobuf, net/http with crypto/tls) cost 8-9 ms at
// every start of the process (tuple --version: 26 ms with them, 17
// without), a quarter of what tuple ls takes on 10,000 sockets; Go runs
// every linked package's init, used or not. Without them, tuple hands the
// command to tupled (forwardToTupled).
type Services struct {
	// ServeExporter serves /metrics on ln as o asks until ctx ends,
	// logging to errOut.
	ServeExporter func(ctx context.Context, ln net.Listener, o ExporterOptions, errOut io.Writer) error
	// ServeBrokerMetrics serves srv's metrics on ln until stop is called,
	// logging serving errors with logf.
	ServeBrokerMetrics func(ln net.Listener, srv *broker.Server, logf func(string)) (stop func())
}

// services are the Services this binary has: none in tuple.
var services Services

// Provide gives the commands the Services of this binary; tupled's main
// calls it before Main. The hand-over's marker (forwardedEnv) ends here:
// what tupled starts may hand over again.
func Provide(s Services) {
	services = s
	_ = os.Unsetenv(forwardedEnv) // fails only for a malformed name, and it is a constant
}
