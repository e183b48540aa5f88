// Package debug is a sink that logs every message it receives as one
// structured line (msg "debug", the node, the data as JSON) and keeps the
// last few; the leader mirrors them into node metadata at most every 10 s.
package debug

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/debugring"
	"github.com/tinymod/tinymod/module"
)

// ComponentName is how TinyNodes name this component.
const ComponentName = "debug"

// InPort receives anything.
const InPort = "in"

// LastKey is the metadata key holding the last messages as a JSON list.
const LastKey = "last"

// Keep is how many messages are kept.
const Keep = 10

// MirrorEvery bounds how often the leader writes the last messages.
const MirrorEvery = 10 * time.Second

// Component is the debug sink.
type Component struct {
	mu        sync.Mutex
	node      string
	last      []json.RawMessage
	mirroring bool      // a metadata write is scheduled
	mirrored  time.Time // when the last one was written
	every     time.Duration
}

// GetInfo describes the component.
func (c *Component) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: ComponentName, Description: "Logs what it receives", Info: "Logs each message as one structured line and shows the last ones in the node's metadata (written by the leader at most every 10 s).", Tags: []string{"SDK"}}
}

// Instance returns a new debug sink.
func (c *Component) Instance() module.Component { return &Component{every: c.every} }

// Ports: in.
func (c *Component) Ports() []module.Port {
	return []module.Port{{Name: InPort, Label: "In", Position: module.Left}}
}

// Handle logs messages on every replica.
func (c *Component) Handle(ctx context.Context, handler module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.ReconcilePort:
		if n, ok := msg.(*v1alpha1.TinyNode); ok {
			c.mu.Lock()
			c.node = n.Name
			c.mu.Unlock()
		}
	case InPort:
		data, err := json.Marshal(msg)
		if err != nil {
			return module.Permanent(err)
		}
		c.mu.Lock()
		node := c.node
		c.last = append(c.last, data)
		if len(c.last) > Keep {
			c.last = c.last[len(c.last)-Keep:]
		}
		schedule := !c.mirroring
		c.mirroring = true
		wait := c.interval() - time.Since(c.mirrored)
		c.mu.Unlock()
		module.Log(ctx).Info("debug", "node", node, "data", json.RawMessage(data))
		debugring.Default.Add(node, data)
		if schedule {
			time.AfterFunc(max(wait, 0), func() { c.mirror(handler) })
		}
	}
	return nil
}

func (c *Component) interval() time.Duration {
	if c.every > 0 {
		return c.every
	}
	return MirrorEvery
}

// mirror writes the last messages into metadata; on a reader it does nothing.
func (c *Component) mirror(handler module.Handler) {
	c.mu.Lock()
	list, _ := json.Marshal(c.last)
	c.mirroring = false
	c.mirrored = time.Now()
	c.mu.Unlock()
	handler(context.Background(), v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) {
		n.Status.Metadata[LastKey] = string(list)
	})
}
