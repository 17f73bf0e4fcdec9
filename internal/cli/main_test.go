package cli

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/tuple-net/tuple/broker"

	"github.com/tuple-net/tuple/internal/leakcheck"
	"github.com/tuple-net/tuple/internal/reexec"
	"github.com/tuple-net/tuple/kernelvm"
)

// TestMain lets the test binary be a kernelvm guest's program
// (TestWhyDifferentialInGuests), dispatches helpers (internal/reexec) when
// a command run in process re-executes the test binary, then runs the
// tests.
func TestMain(m *testing.M) {
	kernelvm.Guest()
	reexec.Main()
	Provide(noServices)
	leakcheck.Main(m, removeTupleBin)
}

// errNoServices is what a command run in process gets where it would serve
// Prometheus metrics: these tests check everything up to there, tupled's
// own tests (internal/tupled) the serving. Without Services the command
// would hand the test binary over to tupled.
var errNoServices = errors.New("cli tests serve no metrics: internal/tupled's tests do")

var noServices = Services{
	ServeExporter: func(_ context.Context, ln net.Listener, _ ExporterOptions, _ io.Writer) error {
		ln.Close()
		return errNoServices
	},
	ServeBrokerMetrics: func(ln net.Listener, _ *broker.Server, logf func(string)) func() {
		ln.Close()
		logf(errNoServices.Error())
		return func() {}
	},
}
