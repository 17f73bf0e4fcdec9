package cli

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tuple-net/tuple/internal/lazyre"
	"github.com/tuple-net/tuple/kernelvm"
	"github.com/tuple-net/tuple/lab"
	"github.com/tuple-net/tuple/rules"
	"golang.org/x/sync/errgroup"
)

// labKernel is one kernel tuple lab --kernel compares: the host, or a
// kernel image booted under qemu.
type labKernel struct {
	name   string
	kernel kernelvm.Kernel // zero for the host
}

// parseKernelList resolves --kernel's comma-separated list.
func parseKernelList(list string) ([]labKernel, error) {
	var out []labKernel
	seen := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, labUsage("--kernel: an empty name in %q", list)
		}
		if seen[name] {
			return nil, labUsage("--kernel: %s given twice", name)
		}
		seen[name] = true
		if name == "host" {
			out = append(out, labKernel{name: name})
			continue
		}
		k, err := kernelvm.Resolve(name)
		if err != nil {
			return nil, labUsage("--kernel: %v", err)
		}
		out = append(out, labKernel{name: name, kernel: k})
	}
	return out, nil
}

// runLabKernels runs the scenarios on each kernel (the host here, the
// others under qemu with this binary as the guest's init running
// `tuple lab --json`) and prints one table with a column per kernel.
func runLabKernels(ctx context.Context, o labOptions, args []string, sources []labSource, scenarios []lab.Scenario, s Streams) error {
	kernels, err := parseKernelList(o.kernels)
	if err != nil {
		return err
	}
	// The guest gets the same sources: built-in groups by name, files
	// copied into its initramfs under /lab.
	var guestArgs []string
	files := map[string][]byte{}
	rename := map[string]string{} // guest file name -> the name given here
	for i, src := range sources {
		if !strings.HasSuffix(src.name, ".lab") || !isBuiltinFile(src.name) || fileArg(args, src.name) {
			g := fmt.Sprintf("/lab/%d-%s", i, filepath.Base(src.name))
			if !strings.HasSuffix(g, ".lab") {
				g += ".lab"
			}
			files[strings.TrimPrefix(g, "/")] = src.data
			rename[g] = src.name
			guestArgs = append(guestArgs, g)
			continue
		}
		guestArgs = append(guestArgs, strings.TrimSuffix(src.name, ".lab"))
	}
	// Up to --kernel-jobs kernels run at once, taken in the order given;
	// the table keeps that order. The first failure stops the others.
	runs := make([]lab.KernelRun, len(kernels))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.kernelJobs)
	var mu sync.Mutex // the progress lines
	for i, k := range kernels {
		g.Go(func() error {
			var run lab.KernelRun
			var err error
			if k.kernel.Image == "" {
				run, err = labHostRun(gctx, o, scenarios)
			} else {
				mu.Lock()
				warnf(s.Err, "lab: booting %s under qemu ...\n", k.name)
				mu.Unlock()
				run, err = labGuestRun(gctx, o, k, guestArgs, files, rename)
			}
			if err != nil {
				return err
			}
			run.Name = k.name
			mu.Lock()
			warnf(s.Err, "lab: %s (%s): %s (%.1fs)\n", k.name, run.Release, run.Summary(), run.Duration)
			mu.Unlock()
			runs[i] = run
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	failed := false
	for i, run := range runs {
		// The expectations are written for the newest kernel: another
		// kernel may answer otherwise (that is what the table shows), but
		// the model must agree with every kernel on every line.
		sum := run.Summary()
		if sum.ModelDisagreed > 0 || (kernels[i].kernel.Image == "" && sum.OK != sum.Lines) {
			failed = true
		}
	}
	if o.json {
		err = lab.WriteComparisonJSON(s.Out, runs)
	} else {
		err = lab.WriteComparison(s.Out, runs)
	}
	if err != nil {
		return err
	}
	if failed {
		return exitCode(exitFailure)
	}
	return nil
}

// isBuiltinFile reports whether name is a built-in group's file name.
func isBuiltinFile(name string) bool {
	_, ok := lab.Builtin(strings.TrimSuffix(name, ".lab"))
	return ok && lab.BuiltinFile(strings.TrimSuffix(name, ".lab")) == name
}

// fileArg reports whether name was given as a file on the command line.
func fileArg(args []string, name string) bool {
	for _, a := range args {
		if a == name {
			if isLabFile(a) {
				return true
			}
		}
	}
	return false
}

// labHostRun runs the scenarios here.
func labHostRun(ctx context.Context, o labOptions, scenarios []lab.Scenario) (lab.KernelRun, error) {
	start := time.Now()
	results, err := runScenarios(ctx, o, lab.Runner{HelperTimeout: o.helperTimeout}, scenarios, nil)
	if err != nil {
		return lab.KernelRun{}, err
	}
	run := lab.KernelRun{Release: hostRelease(), Duration: time.Since(start).Seconds()}
	for _, r := range results {
		run.Results = append(run.Results, r.Results...)
	}
	return run, nil
}

// guestSlowdown scales the helper timeout inside a guest: an emulated
// (TCG) guest on a loaded host starts a helper process and answers a
// request an order of magnitude slower than the host (6.12's full library
// did not finish with the host's 10 s).
const guestSlowdown = 12

// labGuestRun boots k with this binary as init running tuple lab --json.
func labGuestRun(ctx context.Context, o labOptions, k labKernel, guestArgs []string, files map[string][]byte, rename map[string]string) (lab.KernelRun, error) {
	args := []string{"lab", "--json", "--repeat", strconv.Itoa(max(o.repeat, 1))}
	if o.timeout > 0 {
		args = append(args, "--timeout", o.timeout.String())
	}
	if o.helperTimeout > 0 {
		args = append(args, "--helper-timeout", (o.helperTimeout * guestSlowdown).String())
	}
	res, err := kernelvm.Run(ctx, kernelvm.Config{
		Kernel: k.kernel.Image, Modules: k.kernel.Modules,
		Args:  append(args, guestArgs...),
		Files: files, Timeout: o.timeout + 2*time.Minute, // the boot on top of the lab's own bound
	})
	if err != nil {
		return lab.KernelRun{}, fmt.Errorf("lab: %s: %w", k.name, err)
	}
	results, perr := lab.ReadJSON(res.Stdout)
	// tuple lab exits 1 when a line is not ok, and also when the lab
	// itself failed: only its summary line (on the console, its standard
	// error) counting every line received tells a complete run.
	lines, summed := guestSummary(res.Console)
	if (res.ExitCode != 0 && res.ExitCode != exitFailure) || perr != nil || !summed || lines != len(results) {
		msg := fmt.Sprintf("lab: %s: the lab in the guest ended with status %d", k.name, res.ExitCode)
		switch {
		case perr != nil:
			msg += fmt.Sprintf(" and unreadable output (%v)", perr)
		case !summed:
			msg += " without its summary"
		case lines != len(results):
			msg += fmt.Sprintf(" having run %d lines, of which %d arrived", lines, len(results))
		}
		return lab.KernelRun{}, fmt.Errorf("%s; its console ends:\n%s", msg, consoleTail(res.Console, 20))
	}
	for i := range results {
		if n, ok := rename[results[i].File]; ok {
			results[i].File = n
		}
		results[i].Release = res.Release
	}
	return lab.KernelRun{Release: res.Release, Accel: res.Accel, Duration: res.Duration.Seconds(), Results: results}, nil
}

// consoleTail is the last n lines of a guest console, indented.
func consoleTail(console []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(string(console), "\r", "")), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// parseKernelVersion reads --kernel-version; empty means the running
// kernel (nil).
func parseKernelVersion(v string) (*rules.Kernel, error) {
	if v == "" {
		return nil, nil
	}
	k, err := rules.ParseKernel(v)
	if err != nil {
		return nil, usageError("--kernel-version: %v", err)
	}
	if !k.AtLeast(rules.Oldest.Major, rules.Oldest.Minor, 0) {
		return nil, usageError("--kernel-version %s: the model follows kernels from %s on (the oldest it is checked against)", v, rules.Oldest)
	}
	return &k, nil
}

// summaryRE matches tuple lab's summary line (lab.Summary.String).
var summaryRE = lazyre.New(`(?m)^(\d+) scenarios, (\d+) lines: `)

// guestSummary finds the guest lab's summary line on its console and
// returns the number of lines it ran.
func guestSummary(console []byte) (int, bool) {
	m := summaryRE().FindAllSubmatch(bytes.ReplaceAll(console, []byte("\r"), nil), -1)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(string(m[len(m)-1][2]))
	return n, err == nil
}
