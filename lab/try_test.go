package lab

import (
	"context"
	"os"
	"testing"
)

func TestTry(t *testing.T) {
	data, _ := os.ReadFile("/tmp/t1.lab")
	scs, err := Parse("t1.lab", data)
	if err != nil {
		t.Fatal(err)
	}
	var r Runner
	for _, sc := range scs {
		res, err := r.Run(context.Background(), sc)
		for _, x := range res.Results {
			t.Logf("%+v", x)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Log(res.Duration)
	}
}

func TestZFDs(t *testing.T) {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		t.Log(e.Name(), l)
	}
}
