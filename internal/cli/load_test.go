package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadBadInputExits2(t *testing.T) {
	for _, args := range [][]string{
		{"load"},
		{"load", "--to", "127.0.0.1:80"},
		{"load", "--to", "127.0.0.1:80", "--conns", "0"},
		{"load", "--to", "127.0.0.1", "--conns", "1"},
		{"load", "--to", "127.0.0.1:0", "--conns", "1"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--policy", "fixed:0"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--policy", "sharing"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--from", "127.0.0.1", "--policy", "kernel"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--from", "::1"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--from", "localhost"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--per-proc", "20000"},
		{"load", "--to", "127.0.0.1:80", "--conns", "1", "--hold", "-1s"},
		{"load", "--listen", "127.0.0.1:9"},
		{"load", "--listen", "127.0.0.1", "--hold", "1s"},
		{"load", "--listen", "127.0.0.1:9", "--hold", "1s", "--procs", "0"},
		{"load", "--listen", "127.0.0.1:9", "--hold", "1s", "--to", "127.0.0.1:80"},
		{"load", "--to", "127.0.0.1:80", "--conns", "x"},
		{"load", "--to", "127.0.0.1:80", "--conns", "100000", "--per-proc", "10"},
	} {
		code, out, errOut := run(t, "", args...)
		if code != 2 {
			t.Errorf("tuple %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), code, errOut)
		}
		if out != "" || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || errOut == "" {
			t.Errorf("tuple %s: want one error line and no output, got %q / %q", strings.Join(args, " "), out, errOut)
		}
	}
}

func TestSummarize(t *testing.T) {
	got := summarize([]workerMsg{
		{Type: "result", Established: 3, Errors: map[string]int{"EADDRNOTAVAIL": 2}, LatencyUS: []int64{100, 300, 200},
			Ports: []uint16{40000, 40001}, ElapsedUS: 1_000_000, CPUUS: 500, Failed: 2, Stopped: []string{"10.0.1.2:80"}},
		{Type: "result", Established: 1, Errors: map[string]int{"EADDRNOTAVAIL": 1, "timeout": 1}, LatencyUS: []int64{5000},
			Ports: []uint16{40001}, ElapsedUS: 2_000_000, CPUUS: 300, Failed: 2, Stopped: []string{"10.0.1.2:80", "10.0.1.1:80"}},
	})
	want := loadReport{
		Established: 4,
		Errors:      map[string]int{"EADDRNOTAVAIL": 3, "timeout": 1},
		RatePerS:    2, // 4 connections over the slowest worker's 2 s
		P50ms:       0.2,
		P99ms:       5,
		LocalPorts:  2,
		ElapsedS:    2,
		CPUUSPer:    100, // 800 µs over 8 attempts
		GivenUp:     []string{"10.0.1.1:80", "10.0.1.2:80"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("summarize (-want +got):\n%s", d)
	}
	if p := percentile(nil, 99); p != 0 {
		t.Errorf("percentile of nothing = %v", p)
	}
	if p := percentile([]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 50); p != 5 {
		t.Errorf("p50 of 1..10 = %v, want 5", p)
	}
}
