package lab

import (
	"bytes"
	"strings"
	"testing"
)

func TestMergeMarksFlaky(t *testing.T) {
	run := func(kernel string) ScenarioResult {
		rs := []Result{
			{Line: 2, Socket: "A", Op: "socket tcp4", Kernel: "ok"},
			{Line: 3, Socket: "A", Op: "bind 127.0.0.1:7000", Kernel: kernel, Model: kernel},
		}
		for i := range rs {
			rs[i].settle()
		}
		return ScenarioResult{Name: "x", Results: rs}
	}
	m := Merge([]ScenarioResult{run("ok"), run("ok"), run("EADDRINUSE")})
	if r := m.Results[0]; r.Flaky || !r.OK || r.Runs != 3 {
		t.Errorf("steady line: %+v", r)
	}
	r := m.Results[1]
	if !r.Flaky || r.OK || r.KernelSeen["ok"] != 2 || r.KernelSeen["EADDRINUSE"] != 1 {
		t.Errorf("varying line: %+v, want flaky, not ok, ok×2 EADDRINUSE×1", r)
	}
	var b bytes.Buffer
	WriteTable(&b, m)
	if !strings.Contains(b.String(), "flaky") || !strings.Contains(b.String(), "EADDRINUSE×1 ok×2") {
		t.Errorf("table does not mark the line:\n%s", b.String())
	}
	if s := Summarize([]ScenarioResult{m}); s.Flaky != 1 || s.Runs != 3 || !strings.Contains(s.String(), "1 flaky") {
		t.Errorf("summary %+v: %s", s, s)
	}
	// A run that stopped early leaves its lines missing: flaky too.
	short := run("ok")
	short.Results = short.Results[:1]
	if r := Merge([]ScenarioResult{run("ok"), short}).Results[1]; !r.Flaky || r.KernelSeen["(missing)"] != 1 {
		t.Errorf("line missing from a run: %+v", r)
	}
}
