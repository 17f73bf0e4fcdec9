// Command tupled is tuple with the Prometheus endpoints: tuple exporter and
// tuple broker --metrics. It runs every tuple command; tuple hands it those
// two, which its own binary leaves out to start a third sooner (see
// internal/cli.Services). Install the two side by side.
package main

import (
	"os"

	"github.com/tuple-net/tuple/internal/cli"
	"github.com/tuple-net/tuple/internal/reexec"
	"github.com/tuple-net/tuple/internal/tupled"
	"github.com/tuple-net/tuple/kernelvm"
)

func main() {
	// As a helper process (a load worker, a lab helper), run only that.
	reexec.Main()
	// As the init of a `tuple lab --kernel` guest, run the lab there.
	kernelvm.Guest()
	cli.Provide(tupled.Services())
	os.Exit(cli.Main(os.Args[1:], cli.StdStreams()))
}
