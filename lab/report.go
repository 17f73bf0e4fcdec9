package lab

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Marks for a line that is ok and one that is not.
const (
	markOK   = "✓"
	markFail = "✗"
)

func mark(r Result) string {
	if r.OK {
		return markOK
	}
	return markFail
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// note explains a line: where the socket ended up, and the model's reason
// when it disagreed with the kernel.
func note(r Result) string {
	var parts []string
	if r.Local != "" {
		parts = append(parts, r.Local)
	}
	if !r.KernelMet() {
		parts = append(parts, "kernel did not do what the line expects")
	}
	switch {
	case !r.ModelAgreed():
		why := "model disagrees"
		if r.Why != "" {
			why += ": " + r.Why
		}
		parts = append(parts, why)
	case r.Model != "" && r.Model != "ok" && r.Why != "":
		parts = append(parts, r.Why)
	}
	return strings.Join(parts, "; ")
}

// Summary counts a run's lines.
type Summary struct {
	Scenarios, Lines, OK int
	KernelUnexpected     int // lines where the kernel did not meet the expectation
	ModelDisagreed       int // lines where the model disagreed with the kernel
}

// Summarize counts the lines of results.
func Summarize(results []ScenarioResult) Summary {
	var s Summary
	for _, sr := range results {
		s.Scenarios++
		for _, r := range sr.Results {
			s.Lines++
			if r.OK {
				s.OK++
			}
			if !r.KernelMet() {
				s.KernelUnexpected++
			}
			if !r.ModelAgreed() {
				s.ModelDisagreed++
			}
		}
	}
	return s
}

func (s Summary) String() string {
	return fmt.Sprintf("%d scenarios, %d lines: %d ok, %d where the kernel did not meet the expectation, %d where the model disagreed with the kernel",
		s.Scenarios, s.Lines, s.OK, s.KernelUnexpected, s.ModelDisagreed)
}

// WriteTable writes one readable table per scenario.
func WriteTable(w io.Writer, sr ScenarioResult) error {
	fmt.Fprintf(w, "[%s]  %s:%d  %.2fs\n", sr.Name, sr.File, sr.Line, sr.Duration)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  LINE\tSOCKET\tOPERATION\tEXPECT\tKERNEL\tMODEL\tOK\tNOTE")
	for _, r := range sr.Results {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Line, orDash(r.Socket), r.Op,
			orDash(r.Expect), r.Kernel, orDash(r.Model), mark(r), note(r))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}

// jsonLine is the --json form of a Result: one object per operation line.
// expect and model are null when the line asserts nothing / the model has
// no say.
type jsonLine struct {
	File     string  `json:"file"`
	Scenario string  `json:"scenario"`
	Line     int     `json:"line"`
	Socket   string  `json:"socket"`
	Op       string  `json:"op"`
	Expect   *string `json:"expect"`
	Kernel   string  `json:"kernel"`
	Model    *string `json:"model"`
	OK       bool    `json:"ok"`
	Local    string  `json:"local,omitempty"`
	Why      string  `json:"why,omitempty"`
	// Release is the kernel that ran the line (uname -r), when a run
	// compares kernels (tuple lab --kernel).
	Release string `json:"kernel_release,omitempty"`
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// WriteJSON writes one JSON object per line of sr.
func WriteJSON(w io.Writer, sr ScenarioResult) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, r := range sr.Results {
		j := jsonLine{File: r.File, Scenario: r.Scenario, Line: r.Line, Socket: r.Socket, Op: r.Op,
			Expect: nullable(r.Expect), Kernel: r.Kernel, Model: nullable(r.Model), OK: r.OK, Local: r.Local}
		j.Why = r.Why
		j.Release = r.Release
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}

// WriteMarkdown writes sr as a Markdown table, for an issue or a forum answer.
func WriteMarkdown(w io.Writer, sr ScenarioResult) error {
	fmt.Fprintf(w, "#### `[%s]` (%s:%d)\n\n", sr.Name, sr.File, sr.Line)
	fmt.Fprintln(w, "| line | socket | operation | expect | kernel | model | ok | note |")
	fmt.Fprintln(w, "|---:|---|---|---|---|---|---|---|")
	esc := strings.NewReplacer("|", `\|`, "\n", " ")
	for _, r := range sr.Results {
		fmt.Fprintf(w, "| %d | %s | `%s` | %s | %s | %s | %s | %s |\n", r.Line, esc.Replace(orDash(r.Socket)),
			esc.Replace(r.Op), orDash(r.Expect), r.Kernel, orDash(r.Model), mark(r), esc.Replace(note(r)))
	}
	_, err := fmt.Fprintln(w)
	return err
}

// ReadJSON parses what WriteJSON wrote (one object per line; blank lines
// are skipped) back into Results: how tuple lab --kernel reads the lines a
// guest kernel ran. OK is recomputed from the other fields.
func ReadJSON(data []byte) ([]Result, error) {
	var out []Result
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		var j jsonLine
		if err := json.Unmarshal([]byte(l), &j); err != nil {
			return out, fmt.Errorf("line %d: %w", i+1, err)
		}
		if j.Kernel == "" || j.Op == "" {
			return out, fmt.Errorf("line %d: not a lab result (no op or kernel result)", i+1)
		}
		r := Result{File: j.File, Scenario: j.Scenario, Line: j.Line, Socket: j.Socket, Op: j.Op,
			Kernel: j.Kernel, Local: j.Local, Why: j.Why, Release: j.Release}
		if j.Expect != nil {
			r.Expect = *j.Expect
		}
		if j.Model != nil {
			r.Model = *j.Model
		}
		r.settle()
		out = append(out, r)
	}
	return out, nil
}
