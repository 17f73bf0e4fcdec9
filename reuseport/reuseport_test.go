package reuseport_test

import (
	"testing"

	"github.com/tuple-net/tuple/reuseport"
)

func TestParseSteering(t *testing.T) {
	for _, s := range []reuseport.Steering{reuseport.SteerHash, reuseport.SteerCPU, reuseport.SteerMap} {
		got, err := reuseport.ParseSteering(s.String())
		if err != nil || got != s {
			t.Errorf("ParseSteering(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := reuseport.ParseSteering("round-robin"); err == nil {
		t.Error("ParseSteering(round-robin): no error")
	}
}
