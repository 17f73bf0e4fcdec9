//go:build !linux

package lab

import (
	"context"
	"time"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/rules"
)

// HelperCommand names the lab's helper process; there are none off Linux.
const HelperCommand = "__lab-helper"

// Runner runs scenarios; on this platform it cannot.
type Runner struct {
	Predict       Predictor
	Wait          time.Duration
	HelperTimeout time.Duration
	Kernel        *rules.Kernel
}

// Run returns an error wrapping inet.ErrUnsupported: scenarios need Linux
// network namespaces.
func (r *Runner) Run(ctx context.Context, sc Scenario) (ScenarioResult, error) {
	return ScenarioResult{File: sc.File, Name: sc.Name, Line: sc.Line}, inet.Unsupported("running lab scenarios (network namespaces)")
}
