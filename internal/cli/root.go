package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tuple-net/tuple/internal/lazyre"
	"github.com/tuple-net/tuple/lab"
	"github.com/tuple-net/tuple/socktab"
)

// Streams are a command's standard input and outputs.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// StdStreams returns the process's own streams; output goes through
// duplicates of descriptors 1 and 2 so a closed pipe is an error, not a
// SIGPIPE death (see offStdFD).
func StdStreams() Streams {
	return Streams{In: os.Stdin, Out: offStdFD(os.Stdout), Err: offStdFD(os.Stderr)}
}

// version is set at build time with -ldflags "-X .../internal/cli.version=v1.2.3";
// otherwise it comes from the module's build info.
var version = ""

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// outputGone reports whether err is a write to standard output that found
// the pipe's reader gone (tuple ls | head -1). The command stops there
// without a word and exits 0: the reader had what it wanted, as with tools
// SIGPIPE ends, but the exit code stays one of tuple's three. A socket's
// EPIPE is a network failure and is reported; only the file named after
// standard output matches.
func outputGone(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && pe.Path == os.Stdout.Name() && errors.Is(pe.Err, syscall.EPIPE)
}

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

// writeFailed is the error of a command whose output could not be written
// (a closed pipe, a full disk): exit 1 with the cause.
func writeFailed(err error) error {
	return fmt.Errorf("writing the output: %w", err)
}

// warnf writes a diagnostic line to w, the command's standard error. A
// failed write there has nowhere else to be reported, so it is dropped on
// purpose: the command's output and exit code do not depend on it.
func warnf(w io.Writer, format string, a ...any) {
	_, _ = fmt.Fprintf(w, format, a...)
}

// exitCode returns an error that ends the process with code without printing
// anything more (the command already explained itself).
func exitCode(code int) error {
	return &exitError{code: code, err: fmt.Errorf("exit %d", code), silent: true}
}

// commands are tuple's commands in the order help lists them.
var commands = []struct {
	name  string
	build func(Streams) *cobra.Command
}{
	{"version", newVersionCmd},
	{"connect", newConnectCmd},
	{"listen", newListenCmd},
	{"ports", newPortsCmd},
	{"exporter", newExporterCmd},
	{"why", newWhyCmd},
	{"ls", newLsCmd},
	{"who", newWhoCmd},
	{"load", newLoadCmd},
	{"lab", newLabCmd},
	{"broker", newBrokerCmd},
}

// NewRoot builds the tuple command tree.
func NewRoot(s Streams) *cobra.Command {
	return newRoot(s, "")
}

// newRoot builds the tuple command tree, with only the command called only
// when that names one: a command line runs one command, and building all
// of them (flags, help, completions) costs every start a millisecond.
func newRoot(s Streams, only string) *cobra.Command {
	root := &cobra.Command{
		Use:   "tuple",
		Short: "See, share and explain the ports behind every TCP/UDP four-tuple",
		Long: `tuple shows who holds a port, predicts whether a bind/listen/connect will work and
why, and is a netcat with full control of source address, port and reuse options.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Main words the suggestions into the error's one line.
		DisableSuggestions:         true,
		SuggestionsMinimumDistance: 2,
		PersistentPreRunE:          rejectEmptyFlags,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if !c.HasParent() {
			return usageError("%s", flagErrorText(c, err))
		}
		return usageError("%s: %s", commandName(c), flagErrorText(c, err))
	})
	root.Version = buildVersion()
	root.SetVersionTemplate("tuple {{.Version}}\n")
	for _, c := range commands {
		if only == "" || c.name == only {
			root.AddCommand(c.build(s))
		}
	}
	if only != "" {
		return root
	}
	registerCompletions(root)
	strictCompletion(root)
	strictHelp(root)
	return root
}

// rejectEmptyFlags makes an empty value given to a string flag (--print "",
// -w=) bad input. The commands read an empty string as the flag left out,
// so `tuple lab --print ""` would run the whole library instead of
// printing a group.
func rejectEmptyFlags(c *cobra.Command, _ []string) error {
	var empty string
	c.Flags().Visit(func(f *pflag.Flag) { // the flags given only
		if empty == "" && f.Value.Type() == "string" && f.Value.String() == "" {
			empty = f.Name
		}
	})
	if empty != "" {
		return usageError("%s: --%s: empty value", commandName(c), empty)
	}
	return nil
}

// strictHelp makes `tuple help TOPIC` for an unknown topic, or with words
// after the topic, bad input (exit 2): cobra's own help command prints the
// root's usage and exits 0.
func strictHelp(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		if c.Name() != "help" {
			continue
		}
		c.RunE = func(cmd *cobra.Command, args []string) error {
			topic, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 || (topic == root && len(args) > 0) {
				return usageError("help: no command %q (tuple --help lists them)", strings.Join(args, " "))
			}
			return topic.Help()
		}
	}
}

// calledCommand is the command args name first, "" when they name none of
// commands (a flag, help, completion, a typo cobra will answer for).
func calledCommand(args []string) string {
	if len(args) == 0 {
		return ""
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.name
		}
	}
	return ""
}

// registerCompletions offers the values shells cannot guess: lab groups
// (and .lab files), socket states, load policies, netns names where a
// command takes --netns.
func registerCompletions(root *cobra.Command) {
	fixed := func(values ...string) cobra.CompletionFunc {
		return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return values, cobra.ShellCompDirectiveNoFileComp
		}
	}
	var states []string
	for s := socktab.State(1); s.String() != fmt.Sprintf("state(%d)", s); s++ {
		states = append(states, s.String())
	}
	states = append(states, "unconn")
	for _, c := range root.Commands() {
		switch c.Name() {
		case "lab":
			c.ValidArgsFunction = func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return lab.Groups(), cobra.ShellCompDirectiveDefault // files too
			}
		case "ls":
			_ = c.RegisterFlagCompletionFunc("state", fixed(states...))
		case "load":
			_ = c.RegisterFlagCompletionFunc("policy", fixed("kernel", "bind", "shared", "fixed:", "range:"))
		}
		if c.Flags().Lookup("netns") != nil {
			_ = c.RegisterFlagCompletionFunc("netns", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
				ents, _ := os.ReadDir("/run/netns")
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				return names, cobra.ShellCompDirectiveNoFileComp
			})
		}
	}
}

// strictCompletion makes `tuple completion` without a known shell bad input
// (exit 2): cobra's own command prints its help and exits 0, and treats an
// unknown shell the same way.
func strictCompletion(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.RunE = func(cmd *cobra.Command, args []string) error {
				return usageError("completion: name a shell: bash, zsh, fish or powershell")
			}
		}
	}
}

// Main runs tuple with args and returns the process exit code.
func Main(args []string, s Streams) int {
	forwardArgs = args
	if len(args) > 0 && args[0] == "" {
		warnf(s.Err, "tuple: an empty command name (see 'tuple --help')\n")
		return exitUsage
	}
	root := newRoot(s, calledCommand(args))
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	if outputGone(err) {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if printNetFailure(s.Err, err, verboseFlag(cmd)) {
			return ee.code
		}
		if !ee.silent {
			warnf(s.Err, "tuple: %v\n", ee.err)
		}
		return ee.code
	}
	// Errors cobra raises itself (unknown command, wrong argument count)
	// are bad input; commands return their runtime failures as errors
	// through failure().
	if isRuntimeFailure(err) {
		warnf(s.Err, "tuple: %v\n", err)
		return exitFailure
	}
	help := "tuple --help"
	if cmd != nil && cmd != root {
		help = cmd.CommandPath() + " --help"
		warnf(s.Err, "tuple: %s: %v (see '%s')\n", commandName(cmd), err, help)
		return exitUsage
	}
	warnf(s.Err, "tuple: %v%s (see '%s')\n", err, suggestion(root, args), help)
	return exitUsage
}

// suggestion is ", did you mean X?" for a mistyped command name args
// start with, on the error's own line; "" when none is near.
func suggestion(root *cobra.Command, args []string) string {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return ""
	}
	near := root.SuggestionsFor(args[0])
	if len(near) == 0 {
		return ""
	}
	return ", did you mean " + strings.Join(near, " or ") + "?"
}

// verboseFlag reports whether cmd ran with -v/--verbose.
func verboseFlag(cmd *cobra.Command) bool {
	if cmd == nil {
		return false
	}
	f := cmd.Flags().Lookup("verbose")
	return f != nil && f.Changed && f.Value.String() != "false" && f.Value.String() != "0"
}

// flagValueErr is pflag's message for a value its parser refused:
// `invalid argument "80000" for "--sport" flag: strconv.ParseUint: parsing "80000": value out of range`.
var flagValueErr = lazyre.New(`^invalid argument "(.*)" for "(?:-\w, )?(--[\w-]+)" flag: (?:strconv\.\w+: parsing ".*": )?(.*)$`)

// flagErrorText words a flag error for people: the flag, the value and
// what it wants, without the Go parser's names.
func flagErrorText(c *cobra.Command, err error) string {
	m := flagValueErr().FindStringSubmatch(err.Error())
	if m == nil {
		return err.Error()
	}
	value, name, why := m[1], m[2], m[3]
	want := ""
	if f := c.Flags().Lookup(strings.TrimPrefix(name, "--")); f != nil {
		switch f.Value.Type() {
		case "uint16":
			want = "a number from 0 to 65535"
		case "int", "int64", "int32", "uint", "uint32", "uint64", "count":
			want = "a whole number"
		case "duration":
			want = "a duration such as 5s or 500ms"
		case "bool":
			want = "true or false"
		case "float64":
			want = "a number"
		}
	}
	switch why {
	case "value out of range":
		why = "out of range"
	case "invalid syntax":
		why = "not a number"
	}
	if want != "" {
		return fmt.Sprintf("%s %q: %s; want %s", name, value, why, want)
	}
	return fmt.Sprintf("%s %q: %s", name, value, why)
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
			if _, err := fmt.Fprintln(s.Out, "tuple", buildVersion()); err != nil {
				return writeFailed(err)
			}
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
		return "unknown (no build information)"
	}
	return versionOf(info)
}

// versionOf is the version the build information gives: the module's
// version when built from a release (go install ...@v1.2.3), otherwise the
// VCS revision and its time ("-dirty" for uncommitted changes), never Go's
// placeholder "(devel)".
func versionOf(info *debug.BuildInfo) string {
	settings := map[string]string{}
	for _, kv := range info.Settings {
		settings[kv.Key] = kv.Value
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		rev := settings["vcs.revision"]
		switch {
		case rev == "":
			v = "unreleased (no VCS revision: built with -buildvcs=false)"
		default:
			if len(rev) > 12 {
				rev = rev[:12]
			}
			v = "revision " + rev
			if t := settings["vcs.time"]; t != "" {
				v += " (" + t + ")"
			}
			if settings["vcs.modified"] == "true" {
				v += "-dirty"
			}
		}
	}
	return v + ", " + info.GoVersion
}
