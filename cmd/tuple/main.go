// Command tuple lets people see, share and explain the ports behind every
// TCP/UDP four-tuple on a host. See the README for the commands.
package main

import (
	"os"

	"github.com/tuple-net/tuple/internal/cli"
	"github.com/tuple-net/tuple/internal/reexec"
	"github.com/tuple-net/tuple/kernelvm"
)

func main() {
	// As a helper process (a load worker, a lab helper), run only that.
	reexec.Main()
	// As the init of a `tuple lab --kernel` guest, run the lab there.
	kernelvm.Guest()
	os.Exit(cli.Main(os.Args[1:], cli.StdStreams()))
}
