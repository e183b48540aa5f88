package scheduler

import (
	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/schema"
	"github.com/tinymod/tinymod/module"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// Describe returns the ports of the node's instance as it publishes them, and
// false when the node has no instance. It runs no component code: the ports
// are those read when the instance last refreshed them (after its settings
// changed, or it sent on _control or _reconcile), so a status write never
// waits on a component's locks.
func (s *Scheduler) Describe(name string) (module.ComponentInfo, []v1alpha1.PortStatus, bool) {
	inst := s.instance(name)
	if inst == nil {
		return module.ComponentInfo{}, nil, false
	}
	inst.mu.RLock()
	defer inst.mu.RUnlock()
	return inst.info, inst.statuses, true
}

// PortStatuses renders ports with their JSON Schemas, as TinyNode and
// TinyModule status publish them.
func PortStatuses(ports []module.Port) []v1alpha1.PortStatus {
	out := make([]v1alpha1.PortStatus, 0, len(ports))
	for _, p := range ports {
		ps := v1alpha1.PortStatus{Name: p.Name, Label: p.Label, Source: p.Source, Position: p.Position}
		if ps.Position == "" {
			ps.Position = v1alpha1.PositionLeft
			if p.Source {
				ps.Position = v1alpha1.PositionRight
			}
		}
		if raw, err := schema.For(p.Configuration); err == nil {
			ps.Schema = &apiextensionsv1.JSON{Raw: raw}
		}
		out = append(out, ps)
	}
	return out
}

// ModuleComponents renders every component of the scheduler for TinyModule
// status; a component whose GetInfo, Instance or Ports panics is left out, and
// logged.
func (s *Scheduler) ModuleComponents() []v1alpha1.ModuleComponent {
	var out []v1alpha1.ModuleComponent
	for _, name := range s.componentNames() {
		c := s.components[name]
		var mc v1alpha1.ModuleComponent
		if err := contain(func() {
			info := c.GetInfo()
			mc = v1alpha1.ModuleComponent{
				ComponentInfo: v1alpha1.ComponentInfo{Name: info.Name, Description: info.Description, Info: info.Info, Tags: info.Tags},
				Ports:         PortStatuses(c.Instance().Ports()),
			}
		}); err != nil {
			s.opts.Log.Error(err, "component panicked while describing itself", "component", name)
			continue
		}
		out = append(out, mc)
	}
	return out
}
