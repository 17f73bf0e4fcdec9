package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tuple-net/tuple/lab"
)

// labOptions are tuple lab's flags.
type labOptions struct {
	json     bool
	markdown bool
	list     bool
	print    string
	repeat   int
	timeout  time.Duration
	// helperTimeout bounds a helper's answer to one request (guests get
	// guestSlowdown times as long).
	helperTimeout time.Duration
	kernels       string // --kernel: comma-separated kernels to compare
	kernelJobs    int    // --kernel-jobs: kernels run at once
	version       string // --kernel-version: the model's kernel
}

func newLabCmd(s Streams) *cobra.Command {
	var o labOptions
	cmd := &cobra.Command{
		Use:   "lab [FILE.lab | GROUP]...",
		Short: "Run port-sharing scenarios in a throwaway network namespace: kernel beside model",
		Long: `tuple lab runs scenarios for real, each in its own fresh network namespace and as
the uids it names, and prints what the kernel did next to what the rules model
predicted. Without arguments it runs the whole built-in library; a GROUP runs
one built-in group (see --list); a FILE runs your own scenarios (format:
tuple lab --print seed, and docs/lab.md). Needs root.

--repeat N runs every scenario N times and marks each line whose kernel
answer varied between runs as flaky. A run stops after --timeout.

Exit status: 0 when every line is ok (the kernel met the expectation, a
sysctl line without one succeeded, the model agreed, and with --repeat the
kernel answered the same every time), 1 otherwise (or when the run timed
out), 2 on bad input.`,
		Example: `  tuple lab seed
  tuple lab --print seed > mine.lab && tuple lab mine.lab
  tuple lab --json options | jq 'select(.ok | not)'
  tuple lab --repeat 50 --timeout 1h    # prove the library is stable`,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return runLab(cmd.Context(), o, args, s)
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&o.json, "json", false, "print one JSON object per operation line")
	f.BoolVar(&o.markdown, "markdown", false, "print Markdown tables, for an issue or a forum answer")
	f.BoolVar(&o.list, "list", false, "list the built-in groups")
	f.StringVar(&o.print, "print", "", "print the text of built-in group `NAME`")
	f.IntVar(&o.repeat, "repeat", 1, "run every scenario `N` times; a line whose kernel answer varied is flaky")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "stop the whole run after `DURATION`")
	f.DurationVar(&o.helperTimeout, "helper-timeout", 10*time.Second, "fail the run when a socket helper takes longer than `DURATION` (beyond a connect's wait) to answer; guests under --kernel get 12 times as long")
	f.StringVar(&o.kernels, "kernel", "", "run on each kernel of `LIST` under qemu and compare: host, 5.10, 6.1, 6.12 (scripts/fetch-kernels) or a vmlinuz path, comma-separated; exit 1 when the model disagrees with any")
	f.IntVar(&o.kernelJobs, "kernel-jobs", 1, "with --kernel, run up to `N` kernels at once (a guest under TCG takes a core)")
	f.StringVar(&o.version, "kernel-version", "", "the model follows kernel `VERSION` (e.g. 5.10, 6.1.192) instead of the running one")
	cmd.MarkFlagsMutuallyExclusive("json", "markdown")
	cmd.MarkFlagsMutuallyExclusive("kernel", "kernel-version")
	cmd.MarkFlagsMutuallyExclusive("kernel", "markdown")
	return cmd
}

// labUsage is bad input to tuple lab: one line that starts with "lab:",
// as the flag errors cobra finds for it do.
func labUsage(format string, args ...any) error {
	return usageError("lab: "+format, args...)
}

// errLabTimeout is the cause of a run stopped by --timeout.
var errLabTimeout = errors.New("lab run timed out")

// labSource is one file or built-in group to run.
type labSource struct {
	name string // as shown in messages: the path, or GROUP.lab
	data []byte
}

func runLab(ctx context.Context, o labOptions, args []string, s Streams) error {
	if o.list {
		if len(args) > 0 || o.print != "" {
			return labUsage("--list takes no other arguments")
		}
		for _, g := range lab.Groups() {
			text, _ := lab.Builtin(g)
			scs, _ := lab.Parse(lab.BuiltinFile(g), text)
			if _, err := fmt.Fprintf(s.Out, "%-12s %2d scenarios  %s\n", g, len(scs), lab.Description(text)); err != nil {
				return writeFailed(err)
			}
		}
		return nil
	}
	if o.print != "" {
		if len(args) > 0 {
			return labUsage("--print takes one group name and nothing else")
		}
		text, ok := lab.Builtin(o.print)
		if !ok {
			return labUsage("unknown group %q (groups: %s)", o.print, strings.Join(lab.Groups(), ", "))
		}
		_, err := s.Out.Write(text)
		return err
	}
	if o.repeat < 1 || o.repeat > 1000 {
		return labUsage("--repeat %d: want 1-1000", o.repeat)
	}
	if o.timeout <= 0 {
		return labUsage("--timeout %v: want a positive duration, e.g. 30m", o.timeout)
	}
	if o.helperTimeout <= 0 {
		return labUsage("--helper-timeout %v: want a positive duration, e.g. 10s", o.helperTimeout)
	}
	if o.kernelJobs < 1 || o.kernelJobs > 16 {
		return labUsage("--kernel-jobs %d: want 1-16", o.kernelJobs)
	}
	sources, err := labSources(args)
	if err != nil {
		return err
	}
	var scenarios []lab.Scenario
	for _, src := range sources {
		scs, err := lab.Parse(src.name, src.data)
		if err != nil {
			return labUsage("%v", err)
		}
		scenarios = append(scenarios, scs...)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeoutCause(ctx, o.timeout, errLabTimeout)
	defer cancel()
	if o.kernels != "" {
		return runLabKernels(ctx, o, args, sources, scenarios, s)
	}
	kernel, err := parseKernelVersion(o.version)
	if err != nil {
		return labUsage("%v", err)
	}
	runner := lab.Runner{Kernel: kernel, HelperTimeout: o.helperTimeout}
	start := time.Now()
	results, err := runScenarios(ctx, o, runner, scenarios, func(res lab.ScenarioResult) error {
		switch {
		case o.json:
			return lab.WriteJSON(s.Out, res)
		case o.markdown:
			return lab.WriteMarkdown(s.Out, res)
		default:
			return lab.WriteTable(s.Out, res)
		}
	})
	if err != nil {
		return err
	}
	sum := lab.Summarize(results)
	line := fmt.Sprintf("%s (%.1fs)", sum, time.Since(start).Seconds())
	if o.json {
		warnf(s.Err, "%s\n", line)
	} else if _, err := fmt.Fprintln(s.Out, line); err != nil {
		return writeFailed(err)
	}
	if sum.OK != sum.Lines {
		return exitCode(exitFailure)
	}
	return nil
}

// runScenarios runs each scenario (--repeat times, merged) and hands its
// result to emit.
func runScenarios(ctx context.Context, o labOptions, runner lab.Runner, scenarios []lab.Scenario, emit func(lab.ScenarioResult) error) ([]lab.ScenarioResult, error) {
	start := time.Now()
	repeat := max(o.repeat, 1)
	var results []lab.ScenarioResult
	for _, sc := range scenarios {
		runs := make([]lab.ScenarioResult, 0, repeat)
		for range repeat {
			res, err := runner.Run(ctx, sc)
			if ctx.Err() != nil {
				if errors.Is(context.Cause(ctx), errLabTimeout) {
					return results, fmt.Errorf("lab: the run exceeded --timeout %v after %d scenario(s) (%.0fs); namespace and helpers removed", o.timeout, len(results), time.Since(start).Seconds())
				}
				return results, errors.New("lab: interrupted; namespace and helpers removed")
			}
			if err != nil {
				return results, fmt.Errorf("lab: [%s]: %w", sc.Name, err)
			}
			runs = append(runs, res)
		}
		res := runs[0]
		if repeat > 1 {
			res = lab.Merge(runs)
		}
		results = append(results, res)
		if emit != nil {
			if err := emit(res); err != nil {
				return results, err
			}
		}
	}
	return results, nil
}

// labSources resolves arguments: one that exists on disk or ends in .lab is
// a file, anything else a built-in group. No arguments: every group.
func labSources(args []string) ([]labSource, error) {
	if len(args) == 0 {
		args = lab.Groups()
	}
	var out []labSource
	for _, a := range args {
		if isLabFile(a) {
			data, err := readLabFile(a)
			if err != nil {
				return nil, labUsage("%v", err)
			}
			out = append(out, labSource{name: a, data: data})
			continue
		}
		text, ok := lab.Builtin(a)
		if !ok {
			return nil, labUsage("%q is neither a file nor a built-in group (groups: %s)", a, strings.Join(lab.Groups(), ", "))
		}
		out = append(out, labSource{name: lab.BuiltinFile(a), data: text})
	}
	return out, nil
}

// isLabFile tells a file argument from a group name: one ending in .lab, or
// one that exists on disk, unless it is a directory named like a built-in
// group (run from the source tree, "nat" is both).
func isLabFile(a string) bool {
	if strings.HasSuffix(a, ".lab") {
		return true
	}
	fi, err := os.Stat(a)
	if err != nil {
		return false
	}
	_, group := lab.Builtin(a)
	return !fi.IsDir() || !group
}

// readLabFile reads a scenario file, refusing directories and huge files.
func readLabFile(name string) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, errors.Unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	if fi.Size() > 1<<20 {
		return nil, fmt.Errorf("%s: larger than 1 MiB", name)
	}
	return os.ReadFile(name)
}
