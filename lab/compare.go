package lab

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// KernelRun is one kernel's results of a set of scenarios, for comparing
// kernels side by side (tuple lab --kernel).
type KernelRun struct {
	Name     string  // as asked for: "5.10", "host", a path
	Release  string  // uname -r
	Accel    string  // "kvm", "tcg", or empty for the host
	Duration float64 // seconds, boot included
	Results  []Result
}

// lineKey identifies one operation line across kernels.
type lineKey struct {
	file, scenario string
	line           int
}

// CompareRow is one operation line with each kernel's result (nil where a
// kernel did not run it).
type CompareRow struct {
	File, Scenario, Socket, Op, Expect string
	Line                               int
	Results                            []*Result // one per KernelRun, in order
}

// Differ reports whether the kernels that ran the line gave different
// results.
func (r CompareRow) Differ() bool {
	first := ""
	for _, x := range r.Results {
		if x == nil {
			continue
		}
		if first == "" {
			first = x.Kernel
		} else if x.Kernel != first {
			return true
		}
	}
	return false
}

// Compare lines up the runs' results by file, scenario and line, in the
// order the lines first appear.
func Compare(runs []KernelRun) []CompareRow {
	var rows []CompareRow
	index := map[lineKey]int{}
	for k, run := range runs {
		for i := range run.Results {
			r := &run.Results[i]
			key := lineKey{r.File, r.Scenario, r.Line}
			j, ok := index[key]
			if !ok {
				j = len(rows)
				index[key] = j
				rows = append(rows, CompareRow{File: r.File, Scenario: r.Scenario, Socket: r.Socket,
					Op: r.Op, Expect: r.Expect, Line: r.Line, Results: make([]*Result, len(runs))})
			}
			rows[j].Results[k] = r
		}
	}
	return rows
}

// cell is one kernel's answer in the comparison: the kernel's result, the
// model's when it disagreed, and a mark when the expectation was not met.
func cell(r *Result) string {
	if r == nil {
		return "-"
	}
	s := r.Kernel
	if !r.ModelAgreed() {
		s += " (model " + r.Model + ")"
	}
	if !r.KernelMet() {
		s += " !"
	}
	return s
}

// KernelSummary counts one kernel's lines.
func (k KernelRun) Summary() Summary {
	var srs []ScenarioResult
	for i, r := range k.Results {
		if i == 0 || r.File != k.Results[i-1].File || r.Scenario != k.Results[i-1].Scenario {
			srs = append(srs, ScenarioResult{File: r.File, Name: r.Scenario})
		}
		srs[len(srs)-1].Results = append(srs[len(srs)-1].Results, r)
	}
	return Summarize(srs)
}

// WriteComparison writes one table with a column per kernel: each cell is
// that kernel's result, "(model X)" where the model disagreed, "!" where
// the kernel did not meet the line's expectation; the last column says
// whether the kernels differ. A summary per kernel follows.
func WriteComparison(out io.Writer, runs []KernelRun) error {
	w := bufio.NewWriter(out)
	rows := Compare(runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"SCENARIO", "LINE", "SOCKET", "OPERATION", "EXPECT"}
	for _, r := range runs {
		head = append(head, r.Name)
	}
	head = append(head, "KERNELS")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	differ := 0
	for _, row := range rows {
		f := []string{row.Scenario, fmt.Sprint(row.Line), orDash(row.Socket), row.Op, orDash(row.Expect)}
		for _, r := range row.Results {
			f = append(f, cell(r))
		}
		if row.Differ() {
			differ++
			f = append(f, "differ")
		} else {
			f = append(f, "same")
		}
		fmt.Fprintln(tw, strings.Join(f, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL\tRELEASE\tRUN\tLINES\tMODEL AGREED\tAS EXPECTED\tTIME")
	for _, r := range runs {
		s := r.Summary()
		accel := r.Accel
		if accel == "" {
			accel = "here"
		} else {
			accel = "qemu " + accel
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%.1fs\n", r.Name, r.Release, accel, s.Lines,
			s.Lines-s.ModelDisagreed, s.Lines-s.KernelUnexpected, r.Duration)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "the kernels differ on %d of %d lines\n", differ, len(rows))
	return w.Flush()
}

// WriteComparisonJSON writes every kernel's lines, one JSON object each,
// with the kernel's release in each.
func WriteComparisonJSON(w io.Writer, runs []KernelRun) error {
	for _, run := range runs {
		sr := ScenarioResult{Results: make([]Result, len(run.Results))}
		copy(sr.Results, run.Results)
		for i := range sr.Results {
			if sr.Results[i].Release == "" {
				sr.Results[i].Release = run.Release
			}
		}
		if err := WriteJSON(w, sr); err != nil {
			return err
		}
	}
	return nil
}
