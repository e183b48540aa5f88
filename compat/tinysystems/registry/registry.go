// Package registry mirrors the TinySystems SDK's registry: Register adds a
// component to the module binary, to run under that SDK's contract.
package registry

import (
	"sync"

	"github.com/tinymod/tinymod/compat/tinysystems/internal/adapter"
	"github.com/tinymod/tinymod/compat/tinysystems/module"
	tm "github.com/tinymod/tinymod/module"
)

var (
	mu           sync.Mutex
	registered   []module.Component
	requirements *module.Requirements
)

// Register adds c to the components the binary runs, as tinymod's
// module.Register does, under the TinySystems SDK's contract.
func Register(c module.Component) {
	mu.Lock()
	registered = append(registered, c)
	mu.Unlock()
	tm.Register(adapter.Wrap(c))
}

// Adapt returns c as Register runs it, under the SDK's contract: for tests
// that run it through tinymod's module/moduletest.
func Adapt(c module.Component) module.Component { return adapter.Wrap(c) }

// Get returns the components registered here, as they were given.
func Get() []module.Component {
	mu.Lock()
	defer mu.Unlock()
	return append([]module.Component(nil), registered...)
}

// SetRequirements records the module's requirements.
func SetRequirements(r module.Requirements) {
	mu.Lock()
	requirements = &r
	mu.Unlock()
}

// GetRequirements returns the module's requirements, nil if none were set.
func GetRequirements() *module.Requirements {
	mu.Lock()
	defer mu.Unlock()
	return requirements
}
