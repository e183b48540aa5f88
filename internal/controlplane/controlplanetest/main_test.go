package controlplanetest

import (
	"reflect"
	"testing"
)

type runFunc func() int

func (f runFunc) Run() int { return f() }

func TestAtExitRunsAfterTheTestsInReverse(t *testing.T) {
	var order []string
	code := run(runFunc(func() int {
		AtExit(func() { order = append(order, "first") })
		AtExit(func() { order = append(order, "second") })
		order = append(order, "tests")
		return 3
	}))
	if code != 3 {
		t.Errorf("exit code %d, want the tests' 3", code)
	}
	if want := []string{"tests", "second", "first"}; !reflect.DeepEqual(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	RunAtExit()
	if len(order) != 3 {
		t.Errorf("functions ran again: %v", order)
	}
}
