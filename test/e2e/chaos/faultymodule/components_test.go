package main

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
)

// panics reports whether f panics.
func panics(f func()) (did bool) {
	defer func() { did = recover() != nil }()
	f()
	return false
}

func TestFaultyPanicsWhereTold(t *testing.T) {
	var s FaultySettings
	if !panics(func() { _ = json.Unmarshal([]byte(`{"fuse": "blow"}`), &s) }) {
		t.Error("decoding a blown fuse did not panic")
	}
	if err := json.Unmarshal([]byte(`{"fuse": "intact", "panicIn": ["ports"]}`), &s); err != nil || s.Fuse != "intact" {
		t.Errorf("decoding: %v, %+v", err, s)
	}

	out := func(context.Context, string, any) any { return nil }
	c := (&faulty{}).Instance()
	ctx := context.Background()
	if panics(func() { c.Ports() }) || panics(func() { c.Handle(ctx, out, v1alpha1.ReconcilePort, &v1alpha1.TinyNode{}) }) {
		t.Fatal("a faulty node panics before its settings say so")
	}
	for _, tc := range []struct {
		where string
		run   func(*faulty)
	}{
		{PanicInSettings, func(f *faulty) {
			f.Handle(ctx, out, v1alpha1.SettingsPort, FaultySettings{PanicIn: []string{PanicInSettings}})
		}},
		{PanicInReconcile, func(f *faulty) { f.Handle(ctx, out, v1alpha1.ReconcilePort, &v1alpha1.TinyNode{}) }},
		{PanicInPorts, func(f *faulty) { f.Ports() }},
		{PanicInDestroy, func(f *faulty) { f.Destroy() }},
	} {
		f := (&faulty{}).Instance().(*faulty)
		if tc.where != PanicInSettings {
			f.Handle(ctx, out, v1alpha1.SettingsPort, FaultySettings{PanicIn: []string{tc.where}})
		}
		if !panics(func() { tc.run(f) }) {
			t.Errorf("panicIn %s: no panic", tc.where)
		}
	}
	if !panics(func() { c.Handle(ctx, out, v1alpha1.ControlPort, FaultyControl{Panic: true}) }) {
		t.Error("control: no panic")
	}
	if !panics(func() { c.Handle(ctx, out, "in", FaultyMessage{Panic: true}) }) {
		t.Error("business port: no panic")
	}
	var callback func(*v1alpha1.TinyNode)
	c.Handle(ctx, func(_ context.Context, port string, data any) any {
		callback, _ = data.(func(*v1alpha1.TinyNode))
		return nil
	}, v1alpha1.ControlPort, FaultyControl{PanicInStatus: true})
	if callback == nil || !panics(func() { callback(&v1alpha1.TinyNode{}) }) {
		t.Error("status callback: none given, or it does not panic")
	}

	prototype := &faulty{instancePanics: true}
	if panics(func() { prototype.Instance() }) {
		t.Error("faulty-instance panicked before it was armed")
	}
	c.Handle(ctx, out, v1alpha1.SettingsPort, FaultySettings{ArmInstance: true})
	defer instanceArmed.Store(false)
	if !panics(func() { prototype.Instance() }) {
		t.Error("faulty-instance did not panic once armed")
	}
}

func TestPacerSendsWithDeadlines(t *testing.T) {
	var mu sync.Mutex
	var deadlines []time.Duration
	got := make(chan struct{}, 100)
	out := func(ctx context.Context, port string, data any) any {
		d, ok := ctx.Deadline()
		mu.Lock()
		if ok {
			deadlines = append(deadlines, time.Until(d))
		} else {
			deadlines = append(deadlines, -1)
		}
		mu.Unlock()
		select {
		case got <- struct{}{}:
		default:
		}
		return nil
	}
	p := (&pacer{}).Instance().(*pacer)
	defer p.Destroy()
	p.Handle(context.Background(), out, v1alpha1.SettingsPort, PacerSettings{Rate: 200, TimeoutMs: 1000, ShortEvery: 2, InFlight: 4})
	for range 6 {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("the pacer sent nothing")
		}
	}
	p.Destroy()
	mu.Lock()
	defer mu.Unlock()
	long, short := 0, 0
	for _, d := range deadlines {
		switch {
		case d > 500*time.Millisecond && d <= time.Second:
			long++
		case d >= 0 && d <= time.Millisecond:
			short++
		default:
			t.Errorf("a message with deadline in %s", d)
		}
	}
	if long == 0 || short == 0 {
		t.Errorf("deadlines %v: want both the timeout and 1 ms ones", deadlines)
	}
}
