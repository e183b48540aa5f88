package transport

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/module"
)

// blocking holds every message until released, counting arrivals.
type blocking struct {
	arrived atomic.Int32
	release chan struct{}
}

func (b *blocking) Module() module.Info { return module.Info{Name: "b"} }
func (b *blocking) Handle(ctx context.Context, _ scheduler.Msg) any {
	b.arrived.Add(1)
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return "ok"
}

type twoReplicas [2]string

func (r twoReplicas) Replicas(context.Context, string) []string     { return r[:] }
func (r twoReplicas) Leader(context.Context, string) (string, bool) { return r[0], true }

// TestInFlightMessageFailsWhenItsReplicaDies: a replica killed while holding
// a message fails that message with a transient error instead of re-sending
// it to another replica (which could handle it twice); the next message goes
// to the survivor.
func TestInFlightMessageFailsWhenItsReplicaDies(t *testing.T) {
	var servers [2]*grpc.Server
	var addrs twoReplicas
	handlers := [2]*blocking{{release: make(chan struct{})}, {release: make(chan struct{})}}
	for i := range servers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		servers[i] = grpc.NewServer(ServerOptions("t")...)
		NewServer(handlers[i], "t").Register(servers[i])
		go func() { _ = servers[i].Serve(ln) }()
		defer servers[i].Stop()
		addrs[i] = ln.Addr().String()
	}
	close(handlers[1].release) // the survivor answers at once
	c := NewClient(addrs, "t")
	defer c.Close()

	// Round-robin: find the message that lands on replica 0 and holds there.
	results := make(chan any, 1)
	go func() { results <- c.Send(context.Background(), "b", scheduler.Msg{To: "n.in", Data: "x"}) }()
	deadline := time.Now().Add(10 * time.Second)
	for handlers[0].arrived.Load() == 0 && handlers[1].arrived.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if handlers[0].arrived.Load() == 0 { // it went to the survivor: send again until one holds
		<-results
		go func() { results <- c.Send(context.Background(), "b", scheduler.Msg{To: "n.in", Data: "x"}) }()
		for handlers[0].arrived.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	if handlers[0].arrived.Load() != 1 {
		t.Fatal("no message reached replica 0")
	}
	before := handlers[1].arrived.Load()
	servers[0].Stop() // the replica dies with the message in flight
	select {
	case res := <-results:
		err, ok := res.(error)
		if !ok || module.IsPermanent(err) || !strings.Contains(err.Error(), "in flight") {
			t.Errorf("in-flight message: got %v, want a transient error saying it was in flight", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight message never ended")
	}
	if got := handlers[1].arrived.Load(); got != before {
		t.Errorf("the in-flight message was re-sent to the other replica (%d arrivals)", got-before)
	}
	for range 4 {
		if res := c.Send(context.Background(), "b", scheduler.Msg{To: "n.in", Data: "y"}); res != "ok" {
			t.Errorf("after the death of replica 0: %v", res)
		}
	}
}
