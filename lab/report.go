package lab

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// Marks for a line that is ok, one that is not, and one whose kernel
// answer varied between runs.
const (
	markOK    = "✓"
	markFail  = "✗"
	markFlaky = "flaky"
)

func mark(r Result) string {
	switch {
	case r.Flaky:
		return markFlaky
	case r.OK:
		return markOK
	}
	return markFail
}

// seen words the kernel's answers over repeated runs: "EINVAL×1 ok×49".
func seen(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// note explains a line: where the socket ended up, the model's reason
// when it disagreed with the kernel, and what a sysctl the kernel refused
// was refused for.
func note(r Result) string {
	var parts []string
	if r.Local != "" {
		parts = append(parts, r.Local)
	}
	if r.NAT != "" {
		seen := r.Outside
		if seen == "" {
			seen = "nothing arrived"
		}
		parts = append(parts, "outside: "+seen+", nat: "+r.NAT)
	}
	if r.Flaky {
		parts = append(parts, fmt.Sprintf("the kernel's answer varied over %d runs: %s", r.Runs, seen(r.KernelSeen)))
	}
	// refused is what the kernel refused a sysctl for, in words.
	refused := ""
	if r.Model == "" && r.Kernel != "ok" {
		refused = r.Why
	}
	switch {
	case r.KernelMet():
		if refused != "" {
			parts = append(parts, refused)
		}
	case r.Expect == "": // a sysctl or socket line the kernel refused (Wants)
		if refused == "" {
			refused = r.Kernel
		}
		parts = append(parts, "not done: "+refused+"; the lines after it need it (=> "+r.Kernel+" would expect the error)")
	default:
		parts = append(parts, "kernel did not do what the line expects")
		if refused != "" {
			parts = append(parts, refused)
		}
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
	Runs                 int // runs of each scenario (Merge); 0 or 1 for one
	Flaky                int // lines whose kernel answer varied between runs
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
			if r.Flaky {
				s.Flaky++
			}
			s.Runs = max(s.Runs, r.Runs)
		}
	}
	return s
}

func (s Summary) String() string {
	out := fmt.Sprintf("%d scenarios, %d lines: %d ok, %d where the kernel did not meet the expectation, %d where the model disagreed with the kernel",
		s.Scenarios, s.Lines, s.OK, s.KernelUnexpected, s.ModelDisagreed)
	if s.Runs > 1 {
		out += fmt.Sprintf(", %d flaky (the kernel's answer varied over %d runs of each scenario)", s.Flaky, s.Runs)
	}
	return out
}

// WriteTable writes one readable table per scenario.
func WriteTable(out io.Writer, sr ScenarioResult) error {
	w := bufio.NewWriter(out)
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
	fmt.Fprintln(w)
	return w.Flush()
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
	// With repeated runs: how many, whether the kernel's answer varied,
	// and each answer's count.
	Runs       int            `json:"runs,omitempty"`
	Flaky      *bool          `json:"flaky,omitempty"`
	KernelSeen map[string]int `json:"kernel_seen,omitempty"`
	// Through a NAT: nat's prediction and what the far side saw.
	NAT         string `json:"nat,omitempty"`
	Outside     string `json:"outside,omitempty"`
	NATMismatch bool   `json:"nat_disagrees,omitempty"`
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
		j.NAT, j.Outside, j.NATMismatch = r.NAT, r.Outside, r.NATMismatch
		if r.Runs > 1 {
			flaky := r.Flaky
			j.Runs, j.Flaky, j.KernelSeen = r.Runs, &flaky, r.KernelSeen
		}
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}

// WriteMarkdown writes sr as a Markdown table, for an issue or a forum answer.
func WriteMarkdown(out io.Writer, sr ScenarioResult) error {
	w := bufio.NewWriter(out)
	fmt.Fprintf(w, "#### `[%s]` (%s:%d)\n\n", sr.Name, sr.File, sr.Line)
	fmt.Fprintln(w, "| line | socket | operation | expect | kernel | model | ok | note |")
	fmt.Fprintln(w, "|---:|---|---|---|---|---|---|---|")
	esc := strings.NewReplacer("|", `\|`, "\n", " ")
	for _, r := range sr.Results {
		fmt.Fprintf(w, "| %d | %s | `%s` | %s | %s | %s | %s | %s |\n", r.Line, esc.Replace(orDash(r.Socket)),
			esc.Replace(r.Op), orDash(r.Expect), r.Kernel, orDash(r.Model), mark(r), esc.Replace(note(r)))
	}
	fmt.Fprintln(w)
	return w.Flush()
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
			Kernel: j.Kernel, Local: j.Local, Why: j.Why, Release: j.Release,
			NAT: j.NAT, Outside: j.Outside, NATMismatch: j.NATMismatch}
		if j.Runs > 1 { // what WriteJSON writes for repeated runs only
			r.Runs = j.Runs
			r.Flaky = j.Flaky != nil && *j.Flaky
			if len(j.KernelSeen) > 0 {
				r.KernelSeen = j.KernelSeen
			}
		}
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
