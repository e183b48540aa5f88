package main

import (
	"testing"

	"github.com/tinymod/tinymod/module/moduletest"
)

// TestGreeter runs the component through tinymod's scheduler: settings,
// decoding into Person, the edge from out to the test's sink.
func TestGreeter(t *testing.T) {
	f := moduletest.New(t, &Greeter{})
	f.Add("g", "greeter", Settings{Greeting: "Hi"}, map[string]string{"out": "sink.in"})
	if res := f.Send("g.in", Person{Name: "ann"}); res != "ok" {
		t.Fatalf("greeting: %v", res)
	}
	if got := f.Sink.Got(); len(got) != 1 || got[0] != "Hi, ann!" {
		t.Errorf("sink got %v", got)
	}
}

// TestGreeterOnAReader: every replica greets, leader or not, and none of
// them writes status for it.
func TestGreeterOnAReader(t *testing.T) {
	f := moduletest.New(t, &Greeter{})
	f.Leader.Stop()
	f.Add("g", "greeter", nil, map[string]string{"out": "sink.in"})
	if res := f.Send("g.in", Person{Name: "bob"}); res != "ok" {
		t.Fatalf("greeting on a reader: %v", res)
	}
	if got := f.Sink.Got(); len(got) != 1 || got[0] != "Hello, bob!" {
		t.Errorf("sink got %v", got)
	}
	if n := f.Status.Writes(); n != 0 {
		t.Errorf("a reader wrote status %d times", n)
	}
}
