package lab

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func sampleRuns() []KernelRun {
	mk := func(kernel, model string) []Result {
		rs := []Result{
			{File: "k.lab", Scenario: "s", Line: 3, Socket: "A", Op: "bind 0.0.0.0:80", Expect: "ok", Kernel: "ok", Model: "ok"},
			{File: "k.lab", Scenario: "s", Line: 5, Socket: "B", Op: "bind [::ffff:127.0.0.1]:80", Kernel: kernel, Model: model},
			{File: "k.lab", Scenario: "t", Line: 8, Op: "sysctl net.ipv4.tcp_tw_reuse_delay=1", Kernel: "ok"},
		}
		for i := range rs {
			rs[i].settle()
		}
		return rs
	}
	return []KernelRun{
		{Name: "5.10", Release: "5.10.0-46-cloud-amd64", Accel: "tcg", Duration: 80, Results: mk("EADDRINUSE", "EADDRINUSE")},
		{Name: "6.1", Release: "6.1.0-57-cloud-amd64", Accel: "tcg", Duration: 90, Results: mk("ok", "EADDRINUSE")},
		{Name: "host", Release: "6.18.44", Duration: 3, Results: mk("EADDRINUSE", "EADDRINUSE")},
	}
}

func TestCompareLinesUpKernels(t *testing.T) {
	runs := sampleRuns()
	runs[2].Results = runs[2].Results[:2] // the host did not run line 8
	rows := Compare(runs)
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3", len(rows))
	}
	if rows[0].Differ() || !rows[1].Differ() || rows[2].Differ() {
		t.Errorf("differ: %v %v %v, want false true false", rows[0].Differ(), rows[1].Differ(), rows[2].Differ())
	}
	if rows[2].Results[2] != nil {
		t.Error("a line the host did not run has a host result")
	}
	var b bytes.Buffer
	if err := WriteComparison(&b, runs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"5.10", "6.1", "host", "ok (model EADDRINUSE)", "differ", "the kernels differ on 1 of 3 lines",
		"6.1.0-57-cloud-amd64   qemu tcg  3      2             3"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if s := runs[1].Summary(); s.Scenarios != 2 || s.Lines != 3 || s.ModelDisagreed != 1 {
		t.Errorf("6.1 summary %+v", s)
	}
}

// --json with kernels: every line names its kernel, and reads back.
func TestComparisonJSONRoundTrip(t *testing.T) {
	runs := sampleRuns()
	var b bytes.Buffer
	if err := WriteComparisonJSON(&b, runs); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var want []Result
	for _, r := range runs {
		for _, x := range r.Results {
			x.Release = r.Release
			want = append(want, x)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines back, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestReadJSONRejectsOtherInput(t *testing.T) {
	for _, in := range []string{"not json", `{"file":"x"}`, `[1,2]`} {
		if _, err := ReadJSON([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	if rs, err := ReadJSON([]byte("\n\n")); err != nil || len(rs) != 0 {
		t.Errorf("blank input: %v, %v", rs, err)
	}
}

func FuzzReadJSON(f *testing.F) {
	var b bytes.Buffer
	_ = WriteComparisonJSON(&b, sampleRuns())
	f.Add(b.Bytes())
	f.Add([]byte(`{"op":"x","kernel":"ok","expect":null,"model":"EINVAL"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ReadJSON(data)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteComparisonJSON(&out, []KernelRun{{Results: rs}}); err != nil {
			t.Fatal(err)
		}
		again, err := ReadJSON(out.Bytes())
		if err != nil || len(again) != len(rs) {
			t.Fatalf("re-read %d of %d: %v", len(again), len(rs), err)
		}
		for i := range rs {
			if !reflect.DeepEqual(again[i], rs[i]) {
				t.Fatalf("line %d changed: %+v -> %+v", i, rs[i], again[i])
			}
		}
	})
}
