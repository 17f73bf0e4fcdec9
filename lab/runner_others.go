//go:build !linux

package lab

import (
	"context"
	"time"

	"github.com/tuple-net/tuple/rules"
)

// HelperCommand is the hidden subcommand that runs a helper.
const HelperCommand = "__lab-helper"

// Runner runs scenarios; on this platform it cannot.
type Runner struct {
	Helper  []string
	Predict Predictor
	Wait    time.Duration
	Kernel  *rules.Kernel
}

// Run returns ErrNotSupported: scenarios need Linux network namespaces.
func (r *Runner) Run(ctx context.Context, sc Scenario) (ScenarioResult, error) {
	return ScenarioResult{File: sc.File, Name: sc.Name, Line: sc.Line}, ErrNotSupported
}

// HelperMain fails: there are no helpers off Linux.
func HelperMain(args []string) int { return 1 }
