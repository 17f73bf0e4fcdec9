package lab

import (
	"bytes"
	"strings"
	"testing"
)

// TestFailedSysctlIsNotOK: a sysctl the kernel refused, on a line without
// => RESULT, is a failed line (the lines after it need the setting), with
// what the kernel said in words; one that expects the error is ok. So is a
// socket line the kernel refused that the model does not judge (the lines
// after it need the socket); one the model judges (an option this kernel
// may lack) is checked against the model; a line on a socket that is not
// there asserts nothing. The verdict survives --json and reading it back
// (tuple lab --kernel), and counts in the summary.
func TestFailedSysctlIsNotOK(t *testing.T) {
	why := "EINVAL (invalid argument): the kernel refused net.ipv4.ip_local_port_range=40001 40000"
	rs := []Result{
		{File: "t.lab", Scenario: "x", Line: 2, Op: "sysctl net.ipv4.ip_local_port_range=40001 40000", Kernel: "EINVAL", Why: why},
		{File: "t.lab", Scenario: "x", Line: 3, Op: "sysctl net.ipv4.ip_local_port_range=40001 40000", Expect: "EINVAL", Kernel: "EINVAL", Why: why},
		{File: "t.lab", Scenario: "x", Line: 4, Op: "sysctl net.ipv4.tcp_tw_reuse=1", Kernel: "ok"},
		{File: "t.lab", Scenario: "x", Line: 5, Op: "sleep 10ms", Kernel: "ok"},
		{File: "t.lab", Scenario: "x", Line: 6, Socket: "A", Op: "socket tcp6", Kernel: "EAFNOSUPPORT"},
		{File: "t.lab", Scenario: "x", Line: 7, Socket: "B", Op: "socket tcp4 port-range=40000-40009", Kernel: "ENOPROTOOPT", Model: "ENOPROTOOPT"},
		{File: "t.lab", Scenario: "x", Line: 8, Socket: "A", Op: "bind 127.0.0.1:80", Kernel: "EBADF"},
		{File: "t.lab", Scenario: "x", Line: 9, Socket: "C", Op: "server tcp4 127.0.0.1:80", Kernel: "EMFILE"},
	}
	wantOK := []bool{false, true, true, true, false, true, true, false}
	wantWants := []string{"ok", "EINVAL", "ok", "ok", "ok", "", "", "ok"}
	for i := range rs {
		rs[i].settle()
		if rs[i].OK != wantOK[i] || rs[i].KernelMet() != wantOK[i] || rs[i].Wants() != wantWants[i] {
			t.Errorf("line %d %s: ok %v, kernel met %v, wants %q; want ok %v, wants %q", rs[i].Line, rs[i].Op,
				rs[i].OK, rs[i].KernelMet(), rs[i].Wants(), wantOK[i], wantWants[i])
		}
	}
	sr := ScenarioResult{File: "t.lab", Name: "x", Line: 1, Results: rs}
	if sr.OK() {
		t.Error("a scenario with a refused sysctl is ok")
	}
	if s := Summarize([]ScenarioResult{sr}); s.OK != 5 || s.KernelUnexpected != 3 {
		t.Errorf("summary %+v, want 5 ok and 3 where the kernel did not meet the expectation", s)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, sr); err != nil {
		t.Fatal(err)
	}
	var row2, row3 string
	for _, l := range strings.Split(b.String(), "\n") {
		switch {
		case strings.HasPrefix(l, "  2 "):
			row2 = l
		case strings.HasPrefix(l, "  3 "):
			row3 = l
		}
	}
	for _, want := range []string{"EINVAL", markFail, "not done: " + why + "; the lines after it need it (=> EINVAL would expect the error)"} {
		if !strings.Contains(row2, want) {
			t.Errorf("line 2 lacks %q:\n%s", want, b.String())
		}
	}
	if !strings.Contains(row3, markOK) || strings.Contains(row3, "not done") || !strings.Contains(row3, why) {
		t.Errorf("line 3 (=> EINVAL) should be ok:\n%s", b.String())
	}
	b.Reset()
	if err := WriteJSON(&b, sr); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range back {
		if r.OK != wantOK[i] {
			t.Errorf("read back, line %d: ok %v, want %v", r.Line, r.OK, wantOK[i])
		}
	}
}
