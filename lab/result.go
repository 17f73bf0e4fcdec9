package lab

import "strings"

// Result is what one operation line did.
type Result struct {
	File     string
	Scenario string
	Line     int
	Socket   string // empty for sysctl and sleep (which must succeed: Wants)
	Op       string // as written, without the socket name and expectation
	Expect   string // "ok", an errno name, or empty when the line asserts nothing
	Kernel   string // "ok" or the errno name the kernel returned
	// Model is the rules model's prediction, or empty for lines it has no
	// say on (socket, close, pass, sysctl).
	Model string
	Local string // the socket's local address after the operation, when it has one
	Why   string // the model's reason, when it predicted an error or disagreed
	OK    bool   // the kernel met Expect (if any), the model agreed with the kernel, and the line is not Flaky
	// Release is the kernel that ran the line (uname -r), set when a run
	// compares kernels; empty otherwise.
	Release string
	// Runs is how many times the line ran (Merge); 0 or 1 for one run.
	Runs int
	// KernelSeen counts each kernel answer over the runs, when Runs > 1.
	KernelSeen map[string]int
	// Flaky: the kernel's answer varied between runs.
	Flaky bool
	// For a connect through a NAT router of a topology: NAT is the nat
	// package's prediction of the connection's outside source (nat.Pick),
	// Outside what the far side saw ("" when nothing arrived), and
	// NATMismatch whether the two disagree.
	NAT         string
	Outside     string
	NATMismatch bool
}

// KernelMet reports whether the kernel's result met what the line asserts
// (Wants).
func (r Result) KernelMet() bool {
	want := r.Wants()
	return want == "" || want == r.Kernel
}

// Wants is the result the line asserts: its expectation (=> RESULT), else
// "ok" for a line on the namespace rather than on a socket (sysctl; sleep,
// which cannot fail) and for a line creating a socket that the model does
// not judge, else "" (it asserts nothing). The lines after a sysctl or a
// socket line stand on what it makes: one the kernel refused is a failed
// line unless it expects that error (=> EINVAL). A socket line the model
// judges (an option this kernel may lack) is checked against the model.
func (r Result) Wants() string {
	if r.Expect == "" && (r.Socket == "" || r.Model == "" && createsSocket(r.Op)) {
		return "ok"
	}
	return r.Expect
}

// createsSocket reports whether op, as a Result holds it, is a socket or
// server line.
func createsSocket(op string) bool {
	kind, _, _ := strings.Cut(op, " ")
	return kind == "socket" || kind == "server"
}

// ModelAgreed reports whether the model agreed with the kernel (true when
// the line is not one the model predicts).
func (r Result) ModelAgreed() bool {
	return (r.Model == "" || r.Model == r.Kernel) && !r.NATMismatch
}

func (r *Result) settle() { r.OK = r.KernelMet() && r.ModelAgreed() && !r.Flaky }

// ScenarioResult is the outcome of running one scenario.
type ScenarioResult struct {
	File, Name string
	Line       int
	Results    []Result
	Duration   float64 // seconds
}

// OK reports whether every line of the scenario is ok.
func (s ScenarioResult) OK() bool {
	for _, r := range s.Results {
		if !r.OK {
			return false
		}
	}
	return true
}

// Merge folds repeated runs of one scenario into one result: each line
// shows the first run's answers, counts the kernel's answers over all
// runs (KernelSeen) and is Flaky when they differ; a line is OK only when
// it was OK in every run and not Flaky. A run whose lines do not match the
// first's (it failed part-way) counts as "(missing)", so those lines are
// Flaky.
func Merge(runs []ScenarioResult) ScenarioResult {
	if len(runs) == 0 {
		return ScenarioResult{}
	}
	out := runs[0]
	out.Results = append([]Result(nil), runs[0].Results...)
	for i := range out.Results {
		r := &out.Results[i]
		r.Runs, r.KernelSeen = len(runs), map[string]int{}
		allOK := true
		for _, run := range runs {
			if i >= len(run.Results) || run.Results[i].Line != r.Line {
				r.KernelSeen["(missing)"]++
				allOK = false
				continue
			}
			x := run.Results[i]
			r.KernelSeen[x.Kernel]++
			allOK = allOK && x.OK
		}
		r.Flaky = len(r.KernelSeen) > 1
		r.settle()
		r.OK = r.OK && allOK
	}
	for _, run := range runs[1:] {
		out.Duration += run.Duration
	}
	return out
}
