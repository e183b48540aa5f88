// Package adapter runs a component written for the TinySystems SDK under
// that SDK's contract on tinymod's scheduler.
package adapter

import (
	"context"
	"reflect"

	"github.com/tinymod/tinymod/api/v1alpha1"
	compat "github.com/tinymod/tinymod/compat/tinysystems/module"
	"github.com/tinymod/tinymod/internal/contract"
	"github.com/tinymod/tinymod/module"
)

// Component wraps a component written for the SDK.
type Component struct{ inner module.Component }

// Wrap returns c under the SDK's contract. Wrapping twice wraps once.
func Wrap(c module.Component) module.Component {
	if w, ok := c.(*Component); ok {
		return w
	}
	return &Component{inner: c}
}

// Unwrap returns the component as it was written.
func (c *Component) Unwrap() module.Component { return c.inner }

// GetInfo describes the component.
func (c *Component) GetInfo() module.ComponentInfo { return c.inner.GetInfo() }

// Instance returns a new instance, wrapped.
func (c *Component) Instance() module.Component {
	inst := c.inner.Instance()
	if inst == nil {
		return nil
	}
	if v := reflect.ValueOf(inst); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil // a typed nil: no instance, as the scheduler reports
	}
	return Wrap(inst)
}

// Ports lists the component's ports. The SDK's components declare _control
// as a source (it is drawn as one) and still receive on it: here it is an
// input, which is what tinymod's runtime delivers to.
func (c *Component) Ports() []module.Port {
	ports := c.inner.Ports()
	for i, p := range ports {
		if p.Name == v1alpha1.ControlPort && p.Source {
			out := append([]module.Port(nil), ports...)
			out[i].Source = false
			return out
		}
	}
	return ports
}

// Handle hands the message over, with _reconcile's node by value, as the SDK
// delivers it.
func (c *Component) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	if port == v1alpha1.ReconcilePort {
		if n, ok := msg.(*v1alpha1.TinyNode); ok && n != nil {
			msg = *n
		}
	}
	return c.inner.Handle(ctx, output, port, msg)
}

// RuntimeContract asks the scheduler for the SDK's contract.
func (c *Component) RuntimeContract() contract.Contract {
	return contract.Contract{ReconcileFirst: true, DecodeOverZero: true, ForwardMetadata: true, UnvalidatedSettings: true}
}

// Destroy runs the component's own Destroy, if it has one (tinymod's: on
// deletion and when the replica stops).
func (c *Component) Destroy() {
	if d, ok := c.inner.(module.Destroyer); ok {
		d.Destroy()
	}
}

// NodeDeleted runs the component's OnDestroy, if it has one.
func (c *Component) NodeDeleted(metadata map[string]string) {
	if d, ok := c.inner.(compat.Destroyer); ok {
		d.OnDestroy(metadata)
	}
}
