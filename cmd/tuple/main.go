// Command tuple lets people see, share and explain the ports behind every
// TCP/UDP four-tuple on a host. See the README for the commands.
package main

import (
	"os"

	"github.com/tuple-net/tuple/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.StdStreams()))
}
