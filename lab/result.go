package lab

import (
	"errors"
	"runtime"
)

// ErrNotSupported is returned by Run where scenarios cannot run (not Linux).
var ErrNotSupported = errors.New("tuple lab runs scenarios on Linux only, not on " + runtime.GOOS)

// Result is what one operation line did.
type Result struct {
	File     string
	Scenario string
	Line     int
	Socket   string // empty for sysctl
	Op       string // as written, without the socket name and expectation
	Expect   string // "ok", an errno name, or empty when the line asserts nothing
	Kernel   string // "ok" or the errno name the kernel returned
	// Model is the rules model's prediction, or empty for lines it has no
	// say on (socket, close, pass, sysctl).
	Model string
	Local string // the socket's local address after the operation, when it has one
	Why   string // the model's reason, when it predicted an error or disagreed
	OK    bool   // the kernel met Expect (if any) and the model agreed with the kernel
	// Release is the kernel that ran the line (uname -r), set when a run
	// compares kernels; empty otherwise.
	Release string
}

// KernelMet reports whether the kernel's result met the expectation.
func (r Result) KernelMet() bool { return r.Expect == "" || r.Expect == r.Kernel }

// ModelAgreed reports whether the model agreed with the kernel (true when
// the line is not one the model predicts).
func (r Result) ModelAgreed() bool { return r.Model == "" || r.Model == r.Kernel }

func (r *Result) settle() { r.OK = r.KernelMet() && r.ModelAgreed() }

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
