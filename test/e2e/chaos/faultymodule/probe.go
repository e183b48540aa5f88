package main

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

// probe logs every message it receives as one line with msg "probe": the
// node, the data, whether the replica leads (utils.IsLeader) and the message's
// idempotency key (a signal's UID).
type probe struct {
	mu   sync.Mutex
	node string
}

func (p *probe) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: "probe", Description: "Logs each message with what the runtime said about it"}
}

func (p *probe) Instance() module.Component { return &probe{} }

func (p *probe) Ports() []module.Port {
	return []module.Port{{Name: "in", Label: "In", Position: module.Left}}
}

func (p *probe) Handle(ctx context.Context, _ module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.ReconcilePort:
		if n, ok := msg.(*v1alpha1.TinyNode); ok {
			p.mu.Lock()
			p.node = n.Name
			p.mu.Unlock()
		}
	case "in":
		leads := utils.IsLeader(ctx) // first: what the handler would see
		data, err := json.Marshal(msg)
		if err != nil {
			return module.Permanent(err)
		}
		p.mu.Lock()
		node := p.node
		p.mu.Unlock()
		module.Log(ctx).Info("probe", "node", node, "data", json.RawMessage(data), "leader", leads, "id", module.MessageID(ctx))
	}
	return nil
}
