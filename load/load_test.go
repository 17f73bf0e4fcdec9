package load

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSummarize(t *testing.T) {
	got := summarize([]result{
		{0, msg{Type: "result", Established: 3, Errors: map[string]int{"EADDRNOTAVAIL": 2}, LatencyUS: []int64{100, 300, 200},
			Ports: []uint16{40000, 40001}, ElapsedUS: 1_000_000, CPUUS: 500, Failed: 2, Stopped: []string{"10.0.1.2:80"}}},
		{1, msg{Type: "result", Established: 1, Errors: map[string]int{"EADDRNOTAVAIL": 1, "timeout": 1}, LatencyUS: []int64{5000},
			Ports: []uint16{40001}, ElapsedUS: 2_000_000, CPUUS: 300, Failed: 2, Stopped: []string{"10.0.1.2:80", "10.0.1.1:80"}}},
	})
	want := Report{
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
