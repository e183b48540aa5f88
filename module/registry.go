package module

import (
	"fmt"
	"sort"
	"sync"
)

var (
	registryMu sync.RWMutex
	registry   = map[string]Component{}
)

// Register adds components to the module binary's registry, usually from an
// init function. Registering two components with one name panics.
func Register(components ...Component) {
	registryMu.Lock()
	defer registryMu.Unlock()
	for _, c := range components {
		name := c.GetInfo().Name
		if name == "" {
			panic("module.Register: component with no name")
		}
		if _, dup := registry[name]; dup {
			panic(fmt.Sprintf("module.Register: component %q registered twice", name))
		}
		registry[name] = c
	}
}

// Registered returns the registered components sorted by name.
func Registered() []Component {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]Component, 0, len(registry))
	for _, c := range registry {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetInfo().Name < out[j].GetInfo().Name })
	return out
}
