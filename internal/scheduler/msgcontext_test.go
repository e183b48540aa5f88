package scheduler

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

// keeper keeps the context of every message it handles, and what it saw
// of it during Handle.
type keeper struct {
	mu   sync.Mutex
	got  []keptContext
	wait func(ctx context.Context) // called in Handle, if set
}

type keptContext struct {
	ctx          context.Context
	errDuring    error
	leader, logs bool
	depth        int
	id           string
	child        context.Context // made during Handle
}

func (k *keeper) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "keeper"} }
func (k *keeper) Instance() module.Component    { return k }
func (k *keeper) Ports() []module.Port          { return []module.Port{{Name: "in"}} }
func (k *keeper) Handle(ctx context.Context, _ module.Handler, port string, _ any) any {
	if port != "in" {
		return nil
	}
	child, cancel := context.WithCancel(ctx)
	_ = cancel // ended by its parent
	got := keptContext{
		ctx: ctx, errDuring: ctx.Err(), leader: utils.IsLeader(ctx),
		logs:  module.Log(ctx).GetSink() != nil,
		depth: Depth(ctx), id: module.MessageID(ctx), child: child,
	}
	if k.wait != nil {
		k.wait(ctx)
	}
	k.mu.Lock()
	k.got = append(k.got, got)
	k.mu.Unlock()
	return nil
}

func keeperFlow(t *testing.T, k *keeper) (*Scheduler, module.Handler) {
	t.Helper()
	s, err := New(Options{
		Module: module.Info{Name: "m"}, Components: []module.Component{emitter{}, k},
		Leader: leader.Always, Metrics: prometheus.NewRegistry(),
		Log: funcr.New(func(string, string) {}, funcr.Options{}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "k"},
		Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "keeper"}})
	if p := s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "e"},
		Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "emitter",
			Edges: []v1alpha1.TinyNodeEdge{{ID: "e-k", Port: "out", To: "k.in"}}}}); len(p) > 0 {
		t.Fatal(p)
	}
	return s, s.instance("e").output
}

// TestMessageContextLivesUntilAnswered: a business message's context carries
// the replica's leadership, the node's logger, the hops and the message ID
// while it is handled, and ends once it is answered, whether or not the
// component asked for Done before.
func TestMessageContextLivesUntilAnswered(t *testing.T) {
	k := &keeper{}
	s, out := keeperFlow(t, k)
	if r := out(context.Background(), "out", Greeting{}); r != nil {
		t.Fatal(r)
	}
	if r := s.Handle(context.Background(), Msg{To: "k.in", ID: "id-1", Data: map[string]any{}}); r != nil {
		t.Fatal(r)
	}
	if len(k.got) != 2 {
		t.Fatalf("handled %d messages, want 2", len(k.got))
	}
	for i, g := range k.got {
		if g.errDuring != nil || !g.leader || !g.logs {
			t.Errorf("message %d during Handle: err %v, leader %v, logs %v", i, g.errDuring, g.leader, g.logs)
		}
		select {
		case <-g.ctx.Done():
		default:
			t.Errorf("message %d: context not done after the answer", i)
		}
		if !errors.Is(g.ctx.Err(), context.Canceled) || !errors.Is(context.Cause(g.ctx), context.Canceled) {
			t.Errorf("message %d: after the answer err %v, cause %v", i, g.ctx.Err(), context.Cause(g.ctx))
		}
		select {
		case <-g.child.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("message %d: a child context outlived the answer", i)
		}
	}
	if k.got[0].depth != 1 || k.got[1].depth != 0 || k.got[0].id != "" || k.got[1].id != "id-1" {
		t.Errorf("depths %d, %d and IDs %q, %q; want 1, 0 and \"\", id-1", k.got[0].depth, k.got[1].depth, k.got[0].id, k.got[1].id)
	}
}

// TestMessageContextFollowsItsSender: the sender's cancellation reaches a
// handler that waits on Done, and its error is the sender's.
func TestMessageContextFollowsItsSender(t *testing.T) {
	for _, askFirst := range []bool{false, true} {
		var seen error
		k := &keeper{wait: func(ctx context.Context) {
			if askFirst {
				_ = ctx.Done()
			}
			select {
			case <-ctx.Done():
				seen = ctx.Err()
			case <-time.After(5 * time.Second):
			}
		}}
		_, out := keeperFlow(t, k)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		out(ctx, "out", Greeting{})
		cancel()
		if !errors.Is(seen, context.DeadlineExceeded) || !errors.Is(k.got[0].ctx.Err(), context.DeadlineExceeded) {
			t.Errorf("Done asked first %v: saw %v, after %v; want the sender's deadline", askFirst, seen, k.got[0].ctx.Err())
		}
	}
}

// TestMessageContextRace asks for Done while the message is being answered.
func TestMessageContextRace(t *testing.T) {
	for range 200 {
		c := newMsgContext(context.Background(), context.Background(), 0)
		ready := make(chan struct{})
		go func() { close(ready); <-c.Done() }()
		<-ready
		c.answer()
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Done made while answering never closed")
		}
		if c.Err() != context.Canceled {
			t.Fatalf("err %v", c.Err())
		}
	}
}

// TestMsgContextSize: a hop allocates one msgContext; it stays in the
// 48-byte size class.
func TestMsgContextSize(t *testing.T) {
	if n := unsafe.Sizeof(msgContext{}); n > 48 {
		t.Fatalf("msgContext takes %d bytes, want at most 48", n)
	}
}
