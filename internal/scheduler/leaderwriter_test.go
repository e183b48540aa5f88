package scheduler

import (
	"context"
	"testing"

	"github.com/tinymod/tinymod/module"
)

type writesThrough struct{ on bool }

func (writesThrough) GetInfo() module.ComponentInfo                           { return module.ComponentInfo{Name: "w"} }
func (w writesThrough) Instance() module.Component                            { return w }
func (writesThrough) Ports() []module.Port                                    { return nil }
func (writesThrough) Handle(context.Context, module.Handler, string, any) any { return nil }
func (w writesThrough) WritesThroughLeader() bool                             { return w.on }

// TestLeaderWriterForwards: a native component asks for its readers'
// metadata writes to go through the leader by implementing LeaderWriter.
func TestLeaderWriterForwards(t *testing.T) {
	if !contractOf(writesThrough{on: true}).ForwardMetadata {
		t.Error("WritesThroughLeader true: no forwarding")
	}
	if contractOf(writesThrough{on: false}).ForwardMetadata || contractOf(&sink{}).ForwardMetadata {
		t.Error("forwarding without asking")
	}
}
