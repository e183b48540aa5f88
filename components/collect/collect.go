// Package collect gathers messages into batches: it holds what arrives on in
// and emits {items, key, count, reason} on out when a batch reaches a count,
// when a window has passed since its first message, or, collecting per key
// without either, when a message of another key arrives.
//
// Each replica collects the messages it handles, in its own memory: with
// several replicas, a count of N is N messages on one replica, not N across
// the module (docs/components.md says when a flow's messages all reach one
// replica). What a replica holds is dropped, and logged, when its node is
// deleted or the replica stops.
package collect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// ComponentName is how TinyNodes name this component.
const ComponentName = "collect"

// Ports.
const (
	InPort  = "in"
	OutPort = "out"
)

// DefaultMaxItems bounds what one replica holds unless the settings say.
const DefaultMaxItems = 10000

// Reasons a batch is emitted.
const (
	ReasonCount  = "count"
	ReasonWindow = "window"
	ReasonKey    = "key"
)

// Settings of a collect.
type Settings struct {
	Count    int    `json:"count,omitempty" jsonschema:"title=Count,description=Emit a batch once it holds this many messages (0: no count),minimum=0"`
	Window   string `json:"window,omitempty" jsonschema:"title=Window,description=Emit what a batch holds this long after its first message: a Go duration such as 500ms or 1m (empty: no window)"`
	Key      string `json:"key,omitempty" jsonschema:"title=Key,description=Expression over the message ($.user): one batch per value. Without count and window a batch is emitted when a message of another key arrives"`
	MaxItems int    `json:"maxItems,omitempty" jsonschema:"title=Max items,description=How many messages this replica may hold at once; more are refused,minimum=0,default=10000"`
}

// Batch is what leaves on out.
type Batch struct {
	Items  []any  `json:"items" jsonschema:"title=Items,description=The messages collected in the order they arrived"`
	Key    any    `json:"key,omitempty" jsonschema:"title=Key,description=The key's value shared by the items (with a key)"`
	Count  int    `json:"count" jsonschema:"title=Count,description=How many items"`
	Reason string `json:"reason" jsonschema:"title=Reason,description=Why the batch was emitted,enum=count,enum=window,enum=key"`
}

// batch is one batch being collected.
type batch struct {
	id    string // the key's value in JSON, "" without a key
	key   any
	items []any
	timer *time.Timer
}

// Component is the collect.
type Component struct {
	mu       sync.Mutex
	settings Settings
	window   time.Duration
	key      *module.Expr
	batches  map[string]*batch
	held     int
	// base is the context batches are emitted in, with the node's values
	// (its logger) from its first settings; Destroy ends it.
	base       context.Context
	cancel     context.CancelFunc
	configured bool
}

// GetInfo describes the component.
func (c *Component) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: ComponentName, Description: "Gathers messages into batches",
		Info: "Holds what arrives on in and emits {items, key, count, reason} on out at a count, after a window since a batch's first message, or per key. Each replica collects the messages it handles, in memory: a count of N is N on one replica, not across the module. What it holds is dropped when the node is deleted or the replica stops.",
		Tags: []string{"SDK"}}
}

// Instance returns a new collect.
func (c *Component) Instance() module.Component {
	base, cancel := context.WithCancel(context.Background())
	return &Component{settings: Settings{MaxItems: DefaultMaxItems}, batches: map[string]*batch{}, base: base, cancel: cancel}
}

// Ports: settings, in and out.
func (c *Component) Ports() []module.Port {
	c.mu.Lock()
	defer c.mu.Unlock()
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: c.settings},
		{Name: InPort, Label: "In", Position: module.Left},
		{Name: OutPort, Label: "Batch", Source: true, Position: module.Right, Configuration: Batch{Items: []any{}}},
	}
}

// Handle collects on every replica, each what it handles.
func (c *Component) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		s, _ := msg.(Settings)
		return c.configure(ctx, s)
	case InPort:
		return c.collect(ctx, output, msg)
	}
	return nil
}

func (c *Component) configure(ctx context.Context, s Settings) error {
	var errs []error
	if s.Count < 0 {
		errs = append(errs, fmt.Errorf("count %d: want 0 (none) or more", s.Count))
	}
	var window time.Duration
	if s.Window != "" {
		d, err := time.ParseDuration(s.Window)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("window %q: want a positive Go duration such as 500ms or 1m", s.Window))
		}
		window = d
	}
	var key *module.Expr
	if s.Key != "" {
		var err error
		if key, err = module.CompileExpr(s.Key); err != nil {
			errs = append(errs, fmt.Errorf("key: %w", err))
		}
	}
	if s.MaxItems < 0 {
		errs = append(errs, fmt.Errorf("maxItems %d: want 0 (the default, %d) or more", s.MaxItems, DefaultMaxItems))
	}
	if s.Count == 0 && s.Window == "" && s.Key == "" {
		errs = append(errs, errors.New("set count, window or key: with none, a batch would never be emitted"))
	}
	if len(errs) > 0 {
		return module.Permanent(errors.Join(errs...))
	}
	if s.MaxItems == 0 {
		s.MaxItems = DefaultMaxItems
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// What is held stays, under the new settings from the next message on.
	c.settings, c.window, c.key = s, window, key
	if !c.configured {
		// The settings' context lives with the instance, and on the leader
		// only for the term: its values, not its end.
		c.configured = true
		c.cancel()
		c.base, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	}
	return nil
}

// collect adds msg to its batch and emits what is complete.
func (c *Component) collect(ctx context.Context, output module.Handler, msg any) any {
	if err := ctx.Err(); err != nil {
		return err // its sender gave up: it must not turn up in a batch
	}
	c.mu.Lock()
	s, window, keyExpr := c.settings, c.window, c.key
	c.mu.Unlock()

	// A snapshot in JSON form: what the batch holds does not change with
	// its sender's values, and reads as any message does.
	item, err := module.JSONValue(msg)
	if err != nil {
		return module.Permanent(fmt.Errorf("collect: %w", err))
	}
	var key any
	id := ""
	if keyExpr != nil {
		if key, err = keyExpr.Eval(item); err != nil {
			return module.Permanent(fmt.Errorf("key %s: %w", s.Key, err))
		}
		raw, err := json.Marshal(key)
		if err != nil {
			return module.Permanent(fmt.Errorf("key %s: %w", s.Key, err))
		}
		id = string(raw)
	}
	runs := keyExpr != nil && s.Count == 0 && window == 0

	var emit []Batch
	c.mu.Lock()
	if c.held >= s.MaxItems {
		c.mu.Unlock()
		err := fmt.Errorf("collect holds %d messages on this replica, its maxItems: message refused", s.MaxItems)
		if window > 0 {
			return err // transient: batches leave within the window
		}
		return module.Permanent(err)
	}
	if runs {
		// Runs of equal keys: another key closes the batches held.
		for other, b := range c.batches {
			if other != id {
				emit = append(emit, c.takeLocked(b, ReasonKey))
			}
		}
	}
	b := c.batches[id]
	if b == nil {
		b = &batch{id: id, key: key}
		c.batches[id] = b
		if window > 0 {
			b.timer = time.AfterFunc(window, func() { c.expire(b, output) })
		}
	}
	b.items = append(b.items, item)
	c.held++
	if s.Count > 0 && len(b.items) >= s.Count {
		emit = append(emit, c.takeLocked(b, ReasonCount))
	}
	base := c.base
	c.mu.Unlock()

	if len(emit) == 0 {
		return nil
	}
	// The batch holds other senders' messages: it is delivered whatever
	// this message's sender does, with the message's trace and depth, until
	// the instance goes.
	ectx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(base, cancel)
	defer stop()
	var res any
	for _, out := range emit {
		res = output(ectx, OutPort, out)
		if err, failed := res.(error); failed && err != nil {
			return fmt.Errorf("emitting a batch of %d (%s): %w", out.Count, out.Reason, err)
		}
	}
	return res
}

// takeLocked removes b from what is held and returns it as a Batch.
func (c *Component) takeLocked(b *batch, reason string) Batch {
	if b.timer != nil {
		b.timer.Stop()
	}
	delete(c.batches, b.id)
	c.held -= len(b.items)
	return Batch{Items: b.items, Key: b.key, Count: len(b.items), Reason: reason}
}

// expire emits b when its window has passed, unless it left already.
func (c *Component) expire(b *batch, output module.Handler) {
	c.mu.Lock()
	if c.batches[b.id] != b {
		c.mu.Unlock()
		return
	}
	out := c.takeLocked(b, ReasonWindow)
	base := c.base
	c.mu.Unlock()
	// Nobody waits for this batch: a failure is logged.
	if err, failed := output(base, OutPort, out).(error); failed && err != nil {
		module.Log(base).Error(err, "collect: emitting a batch after its window", "items", out.Count)
	}
}

// Destroy drops what the instance holds, saying how much, and ends the
// deliveries of batches under way.
func (c *Component) Destroy() {
	c.mu.Lock()
	for _, b := range c.batches {
		if b.timer != nil {
			b.timer.Stop()
		}
	}
	held, base := c.held, c.base
	c.batches, c.held = map[string]*batch{}, 0
	c.cancel()
	c.mu.Unlock()
	if held > 0 {
		module.Log(base).Info("collect: dropped the messages it held, as its node went or its replica stopped", "items", held)
	}
}
