package schema

import (
	"bytes"
	"testing"
)

// TestKeptDescriptionsAreCopiesAndBounded: a caller that changes the schema
// it got does not change the kept one, and values that differ every time do
// not grow the cache past its bound.
func TestKeptDescriptionsAreCopiesAndBounded(t *testing.T) {
	first, err := Describe(benchNative{Delay: 7})
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(first.Schema)
	for i := range first.Schema {
		first.Schema[i] = 'x'
	}
	again, err := Describe(benchNative{Delay: 7})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Schema, want) {
		t.Fatalf("kept schema changed by a caller: %s", again.Schema)
	}
	for i := range describedMax + 10 {
		if _, err := Describe(benchNative{Delay: i}); err != nil {
			t.Fatal(err)
		}
	}
	described.mu.Lock()
	n := len(described.m)
	described.mu.Unlock()
	if n > describedMax {
		t.Errorf("%d descriptions kept, bound %d", n, describedMax)
	}
}
