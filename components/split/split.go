// Package split sends the elements of a list one by one: each message on in
// gives one message per element on out, in order, each awaited before the
// next. Every replica splits.
package split

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// ComponentName is how TinyNodes name this component.
const ComponentName = "split"

// Ports.
const (
	InPort  = "in"
	OutPort = "out"
)

// Defaults.
const (
	DefaultPath     = "$"
	DefaultMaxItems = 10000
)

// Settings of a split.
type Settings struct {
	Path     string `json:"path" jsonschema:"title=Path,description=Expression over the message ($) selecting the list to split; an object selected splits its items,default=$"`
	MaxItems int    `json:"maxItems,omitempty" jsonschema:"title=Max items,description=Longer lists are refused,minimum=0,default=10000"`
}

// Item is one element of the list, as it leaves on out.
type Item struct {
	Item     any    `json:"item" jsonschema:"title=Item,description=The element"`
	Index    int    `json:"index" jsonschema:"title=Index,description=Its position in the list from 0"`
	Count    int    `json:"count" jsonschema:"title=Count,description=How many elements the list has"`
	ParentID string `json:"parentId,omitempty" jsonschema:"title=Parent ID,description=The ID the split message arrived with (a TinySignal's UID or a message ID from another module); absent when it had none"`
}

// Component is the split.
type Component struct {
	mu       sync.RWMutex
	settings Settings
	path     *module.Expr
}

// GetInfo describes the component.
func (c *Component) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: ComponentName, Description: "Sends a list's elements one by one",
		Info: "Selects a list in each message (path; a message {items: [...]} splits its items) and sends each element on out as {item, index, count, parentId}, in order, awaiting each. The first error stops the split and is returned. Every replica splits.",
		Tags: []string{"SDK"}}
}

// Instance returns a new split.
func (c *Component) Instance() module.Component {
	path, _ := module.CompileExpr(DefaultPath)
	return &Component{settings: Settings{Path: DefaultPath, MaxItems: DefaultMaxItems}, path: path}
}

// Ports: settings, in and out.
func (c *Component) Ports() []module.Port {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: c.settings},
		{Name: InPort, Label: "In", Position: module.Left, ResponseConfiguration: []any{}},
		{Name: OutPort, Label: "Item", Source: true, Position: module.Right, Configuration: Item{}},
	}
}

// Handle splits on every replica.
func (c *Component) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		s, _ := msg.(Settings)
		if s.Path == "" {
			s.Path = DefaultPath
		}
		if s.MaxItems < 0 {
			return module.Permanent(fmt.Errorf("maxItems %d: want 0 (the default, %d) or more", s.MaxItems, DefaultMaxItems))
		}
		if s.MaxItems == 0 {
			s.MaxItems = DefaultMaxItems
		}
		path, err := module.CompileExpr(s.Path)
		if err != nil {
			return module.Permanent(fmt.Errorf("path: %w", err))
		}
		c.mu.Lock()
		c.settings, c.path = s, path
		c.mu.Unlock()
	case InPort:
		c.mu.RLock()
		s, path := c.settings, c.path
		c.mu.RUnlock()
		return c.split(ctx, output, s, path, msg)
	}
	return nil
}

// split sends the elements of the list msg holds, and returns what each
// send returned, in order, or the first error.
func (c *Component) split(ctx context.Context, output module.Handler, s Settings, path *module.Expr, msg any) any {
	v, err := path.Eval(msg)
	if err != nil {
		return module.Permanent(fmt.Errorf("path %s: %w", s.Path, err))
	}
	list, ok := v.([]any)
	if !ok {
		if obj, isObj := v.(map[string]any); isObj {
			list, ok = obj["items"].([]any)
		}
	}
	if !ok {
		return module.Permanent(fmt.Errorf("path %s gave %s, not a list (nor an object with a list in items)", s.Path, kind(v)))
	}
	if len(list) > s.MaxItems {
		return module.Permanent(fmt.Errorf("the list has %d elements, over maxItems (%d)", len(list), s.MaxItems))
	}
	parent := module.MessageID(ctx)
	results := make([]any, len(list))
	for i, elem := range list {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("split stopped before element %d of %d: %w", i, len(list), err)
		}
		ictx := ctx
		if parent != "" {
			// Each element gets an ID of its own, as stable as its parent's,
			// for receivers that use it as an idempotency key.
			ictx = module.WithMessageID(ctx, parent+"/"+strconv.Itoa(i))
		}
		res := output(ictx, OutPort, Item{Item: elem, Index: i, Count: len(list), ParentID: parent})
		if err, failed := res.(error); failed && err != nil {
			// Wrapped, the error keeps its class: a permanent one stays so.
			return fmt.Errorf("element %d of %d: %w", i, len(list), err)
		}
		results[i] = res
	}
	return results
}

// kind names what a JSON value is, for errors.
func kind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object without a list in items"
	case string:
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("the string %q", v)
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}
