package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Streams are a command's standard input and outputs.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// StdStreams returns the process's own streams.
func StdStreams() Streams { return Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr} }

// version is set at build time with -ldflags "-X .../internal/cli.version=v1.2.3";
// otherwise it comes from the module's build info.
var version = ""

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// exitError carries an exit code with the error that caused it. silent
// errors have already been reported by the command.
type exitError struct {
	code   int
	err    error
	silent bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks bad input: the user gets one line and exit code 2.
func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// exitCode returns an error that ends the process with code without printing
// anything more (the command already explained itself).
func exitCode(code int) error {
	return &exitError{code: code, err: fmt.Errorf("exit %d", code), silent: true}
}

// NewRoot builds the tuple command tree.
func NewRoot(s Streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "tuple",
		Short: "See, share and explain the ports behind every TCP/UDP four-tuple",
		Long: `tuple shows who holds a port, predicts whether a bind/listen/connect will work and
why, and is a netcat with full control of source address, port and reuse options.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError("%s: %v", commandName(c), err)
	})
	root.AddCommand(
		newVersionCmd(s),
		newConnectCmd(s),
		newListenCmd(s),
		newPortsCmd(s),
		newExporterCmd(s),
		newWhyCmd(s),
		newLsCmd(s),
		newWhoCmd(s),
		newLoadCmd(s),
		newLoadWorkerCmd(s),
		newLabCmd(s),
		newLabHelperCmd(),
		newBrokerCmd(s),
	)
	return root
}

// Main runs tuple with args and returns the process exit code.
func Main(args []string, s Streams) int {
	root := NewRoot(s)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if printNetFailure(s.Err, err, verboseFlag(cmd)) {
			return ee.code
		}
		if !ee.silent {
			fmt.Fprintf(s.Err, "tuple: %v\n", ee.err)
		}
		return ee.code
	}
	// Errors cobra raises itself (unknown command, wrong argument count)
	// are bad input; commands return their runtime failures as errors
	// through failure().
	if isRuntimeFailure(err) {
		fmt.Fprintf(s.Err, "tuple: %v\n", err)
		return exitFailure
	}
	help := "tuple --help"
	if cmd != nil && cmd != root {
		help = cmd.CommandPath() + " --help"
		fmt.Fprintf(s.Err, "tuple: %s: %v (see '%s')\n", commandName(cmd), err, help)
		return exitUsage
	}
	fmt.Fprintf(s.Err, "tuple: %v (see '%s')\n", err, help)
	return exitUsage
}

// verboseFlag reports whether cmd ran with -v/--verbose.
func verboseFlag(cmd *cobra.Command) bool {
	if cmd == nil {
		return false
	}
	f := cmd.Flags().Lookup("verbose")
	return f != nil && f.Changed && f.Value.String() != "false" && f.Value.String() != "0"
}

// commandName is a command's path without the leading "tuple".
func commandName(c *cobra.Command) string {
	return strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
}

// runtimeFailure marks an error returned by a command's run function.
type runtimeFailure struct{ error }

func (r runtimeFailure) Unwrap() error { return r.error }

func isRuntimeFailure(err error) bool {
	var rf runtimeFailure
	return errors.As(err, &rf)
}

// runE adapts a command's run function: errors it returns that are not
// usage errors count as runtime failures (exit 1).
func runE(run func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := run(cmd, args)
		var ee *exitError
		if err == nil || errors.As(err, &ee) {
			return err
		}
		return runtimeFailure{err}
	}
}

func newVersionCmd(s Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print tuple's version",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(s.Out, "tuple", buildVersion())
			return nil
		}),
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, kv := range info.Settings {
		if kv.Key == "vcs.revision" && len(kv.Value) >= 12 {
			v += " " + kv.Value[:12]
		}
	}
	return v + " " + info.GoVersion
}
