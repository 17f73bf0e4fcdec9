package lazyre

import "testing"

func TestCompilesOnceAtFirstUse(t *testing.T) {
	re := New(`^a+$`)
	first := re()
	if !first.MatchString("aaa") || first.MatchString("b") {
		t.Fatalf("%v does not match as ^a+$ does", first)
	}
	if re() != first {
		t.Fatal("a second call compiled the expression again")
	}
}

func TestInvalidPanicsAtFirstUse(t *testing.T) {
	re := New(`(`) // no panic yet
	defer func() {
		if recover() == nil {
			t.Fatal("an invalid expression did not panic at its first use")
		}
	}()
	re()
}
