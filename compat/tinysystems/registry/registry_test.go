package registry_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/tinymod/tinymod/compat/tinysystems/module"
	"github.com/tinymod/tinymod/compat/tinysystems/registry"
	"github.com/tinymod/tinymod/module/moduletest"
)

// both implements tinymod's Destroy (stop what runs when the instance goes,
// e.g. when the replica stops) and the SDK's OnDestroy (the node was deleted).
type both struct {
	destroyed   *atomic.Int32
	onDestroyed *atomic.Int32
}

func (b *both) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "both"} }
func (b *both) Instance() module.Component {
	return &both{destroyed: b.destroyed, onDestroyed: b.onDestroyed}
}
func (b *both) Ports() []module.Port                                    { return []module.Port{{Name: "in"}} }
func (b *both) Handle(context.Context, module.Handler, string, any) any { return nil }
func (b *both) Destroy()                                                { b.destroyed.Add(1) }
func (b *both) OnDestroy(map[string]string)                             { b.onDestroyed.Add(1) }

// TestAdaptedComponentIsDestroyed: a component registered through compat
// that implements tinymod's Destroy as well as the SDK's OnDestroy gets both:
// Destroy on removal and when the replica stops, OnDestroy on removal only.
func TestAdaptedComponentIsDestroyed(t *testing.T) {
	c := &both{destroyed: &atomic.Int32{}, onDestroyed: &atomic.Int32{}}
	f := moduletest.New(t, registry.Adapt(c))
	f.Add("b", "both", nil, nil)
	f.Remove("b")
	if c.onDestroyed.Load() != 1 {
		t.Errorf("OnDestroy ran %d times, want 1", c.onDestroyed.Load())
	}
	if c.destroyed.Load() != 1 {
		t.Errorf("Destroy ran %d times, want 1: the adapter hides module.Destroyer", c.destroyed.Load())
	}
}
