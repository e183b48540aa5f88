package transport

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/internal/transport/transportpb"
	"github.com/tinymod/tinymod/module"
)

// childCounter is a stream context that counts the contexts derived from it
// that are still live: context.WithCancel and WithTimeout register a child
// through AfterFunc, and cancelling the child stops that registration.
type childCounter struct {
	context.Context // Background: not a cancelCtx, so AfterFunc is used
	done            chan struct{}
	live            atomic.Int64
}

func newChildCounter() *childCounter {
	return &childCounter{Context: context.Background(), done: make(chan struct{})}
}

func (c *childCounter) Done() <-chan struct{} { return c.done }

func (c *childCounter) AfterFunc(func()) (stop func() bool) {
	c.live.Add(1)
	var once sync.Once
	return func() bool {
		stopped := false
		once.Do(func() { c.live.Add(-1); stopped = true })
		return stopped
	}
}

// fakeStream is the server side of a Stream, fed and read by the test.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
	in  chan *transportpb.Envelope // closed: the sender closed its side
	out chan *transportpb.Envelope
}

func newFakeStream(ctx context.Context) *fakeStream {
	return &fakeStream{ctx: ctx, in: make(chan *transportpb.Envelope), out: make(chan *transportpb.Envelope, 1024)}
}

func (f *fakeStream) Context() context.Context { return f.ctx }

func (f *fakeStream) SendHeader(metadata.MD) error { return nil }

func (f *fakeStream) Recv() (*transportpb.Envelope, error) {
	select {
	case env, ok := <-f.in:
		if !ok {
			return nil, io.EOF
		}
		return env, nil
	case <-f.ctx.Done():
		return nil, status.Error(codes.Canceled, "stream ended")
	}
}

func (f *fakeStream) Send(env *transportpb.Envelope) error {
	f.out <- env
	return nil
}

func (f *fakeStream) answer(t *testing.T) *transportpb.Envelope {
	t.Helper()
	select {
	case env := <-f.out:
		return env
	case <-time.After(10 * time.Second):
		t.Fatal("no answer on the stream")
		return nil
	}
}

func message(seq uint64, data string) *transportpb.Envelope {
	return &transportpb.Envelope{Seq: seq, Message: &transportpb.Message{Module: "b", To: "n.in", Data: []byte(data)}}
}

// TestStreamLeavesNoContextPerMessage: every message of a long-lived stream
// gets a context derived from the stream's; once answered, none of them is
// left registered on it, deadline or not.
func TestStreamLeavesNoContextPerMessage(t *testing.T) {
	ctx := newChildCounter()
	stream := newFakeStream(ctx)
	s := NewServer(answer{}, "")
	done := make(chan error, 1)
	go func() { done <- s.Stream(stream) }()

	const n = 100
	for i := range uint64(n) {
		env := message(i+1, `"x"`)
		if i%2 == 0 {
			env.Timeout = int64(time.Minute)
		}
		stream.in <- env
	}
	for range n {
		if env := stream.answer(t); env.GetCode() != 0 || string(env.GetResult().GetData()) != `"ok"` {
			t.Fatalf("answer: %v", env)
		}
	}
	// Each handler cancels its context before it answers.
	if live := ctx.live.Load(); live != 0 {
		t.Errorf("%d message contexts still hang on the stream's after %d answered messages", live, n)
	}
	close(stream.in)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Stream: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stream did not return after the sender closed its side")
	}
}

// gate holds every message until released, recording how many run at once.
type gate struct {
	release          chan struct{}
	arrived, running atomic.Int32
	most             atomic.Int32
}

func (g *gate) Module() module.Info { return module.Info{Name: "b"} }
func (g *gate) Handle(ctx context.Context, _ scheduler.Msg) any {
	g.arrived.Add(1)
	r := g.running.Add(1)
	defer g.running.Add(-1)
	for {
		m := g.most.Load()
		if r <= m || g.most.CompareAndSwap(m, r) {
			break
		}
	}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return "ok"
}

// TestStreamBoundsConcurrentHandlers: past MaxConcurrentPerStream handlers,
// a stream reads at most as many messages ahead and then stops reading (the
// sender waits), instead of starting a goroutine per message.
func TestStreamBoundsConcurrentHandlers(t *testing.T) {
	const limit, n = 4, 40
	g := &gate{release: make(chan struct{})}
	s := NewServerWith(g, "", ServerConfig{MaxConcurrentPerStream: limit})
	stream := newFakeStream(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Stream(stream) }()

	var fed atomic.Int32
	go func() {
		for i := range uint64(n) {
			stream.in <- message(i+1, `"x"`)
			fed.Add(1)
		}
	}()
	// limit running and limit read ahead.
	const taken = 2 * limit
	deadline := time.Now().Add(10 * time.Second)
	for (fed.Load() < taken || g.arrived.Load() < limit) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := g.arrived.Load(); got != limit {
		t.Errorf("%d handlers started, want %d", got, limit)
	}
	if got := fed.Load(); got != taken {
		t.Errorf("the stream took %d messages while full, want %d", got, taken)
	}

	close(g.release)
	for range n {
		if env := stream.answer(t); env.GetCode() != 0 {
			t.Fatalf("answer: %v", env)
		}
	}
	if got := g.most.Load(); got > limit {
		t.Errorf("%d handlers ran at once, over the limit of %d", got, limit)
	}
	close(stream.in)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stream did not return")
	}
}

// TestNegativeDepthIsRefused: a depth below zero would slip under the cycle
// limit; it is refused as malformed, permanently, and never handled.
func TestNegativeDepthIsRefused(t *testing.T) {
	h := &gate{release: make(chan struct{})}
	close(h.release)
	s := NewServer(h, "")
	_, err := s.Send(context.Background(), &transportpb.Message{Module: "b", To: "n.in", Depth: -1})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("unary: got %v, want InvalidArgument", err)
	}

	addr := listen(t, s)
	c := NewClient(fixedResolver(addr), "t")
	defer c.Close()
	ctx := scheduler.WithDepth(context.Background(), -5)
	res := c.Send(ctx, "b", scheduler.Msg{To: "n.in", Data: "x"})
	if err, ok := res.(error); !ok || !module.IsPermanent(err) {
		t.Errorf("over the stream: got %v, want a permanent error", res)
	}
	if got := h.arrived.Load(); got != 0 {
		t.Errorf("a message with a negative depth was handled %d times", got)
	}
	if res := c.Send(context.Background(), "b", scheduler.Msg{To: "n.in", Data: "x"}); res != "ok" {
		t.Errorf("depth 0: %v", res)
	}
}

// listen serves s on a loopback port until the test ends.
func listen(t *testing.T, s *Server) string {
	t.Helper()
	g, addr := serveOn(t, s)
	t.Cleanup(g.Stop)
	return addr
}

func serveOn(t *testing.T, s *Server) (*grpc.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(ServerOptions("t")...)
	s.Register(g)
	go func() { _ = g.Serve(ln) }()
	return g, ln.Addr().String()
}

// named answers with its name, and holds a message saying "slow" until released.
type named struct {
	name    string
	release chan struct{}
	holding atomic.Int32
}

func (n *named) Module() module.Info { return module.Info{Name: "b"} }
func (n *named) Handle(ctx context.Context, m scheduler.Msg) any {
	if raw, _ := m.Data.(json.RawMessage); string(raw) == `"slow"` {
		n.holding.Add(1)
		select {
		case <-n.release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return n.name + " slow"
	}
	return n.name
}

// switchable resolves to whatever the test last set.
type switchable struct {
	mu    sync.Mutex
	addrs []string
}

func (s *switchable) set(addrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addrs = addrs
}

func (s *switchable) Replicas(context.Context, string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.addrs...)
}

func (s *switchable) Leader(context.Context, string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.addrs) == 0 {
		return "", false
	}
	return s.addrs[0], true
}

// TestDrainAnswersInFlightAndEndsStreams: a replica with a client's stream
// open and a slow message in flight drains: the slow message gets its
// answer, messages sent meanwhile are answered (by the other replica when
// this one no longer takes them), and GracefulStop returns promptly instead
// of waiting for the stream forever.
func TestDrainAnswersInFlightAndEndsStreams(t *testing.T) {
	a := &named{name: "A", release: make(chan struct{})}
	b := &named{name: "B", release: make(chan struct{})}
	srvA := NewServer(a, "t")
	gA, addrA := serveOn(t, srvA)
	t.Cleanup(gA.Stop)
	addrB := listen(t, NewServer(b, "t"))
	r := &switchable{}
	r.set(addrA)
	c := NewClient(r, "t")
	defer c.Close()

	slow := make(chan any, 1)
	go func() { slow <- c.Send(context.Background(), "b", scheduler.Msg{To: "n.in", Data: "slow"}) }()
	deadline := time.Now().Add(10 * time.Second)
	for a.holding.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if a.holding.Load() != 1 {
		t.Fatal("the slow message never reached A")
	}
	r.set(addrA, addrB)

	start := time.Now()
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := srvA.Drain(ctx)
		gA.GracefulStop()
		stopped <- err
	}()
	<-srvA.draining
	// Sent while A drains: none may be lost.
	for i := range 20 {
		if res := c.Send(context.Background(), "b", scheduler.Msg{To: "n.in", Data: "x"}); res != "A" && res != "B" {
			t.Errorf("message %d sent during the drain: %v", i, res)
		}
	}
	select {
	case <-stopped:
		t.Fatal("A stopped before answering its message in flight")
	default:
	}
	close(a.release)
	select {
	case res := <-slow:
		if res != "A slow" {
			t.Errorf("the message in flight got %v, want A's answer", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message in flight got no answer")
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Drain: %v", err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("Drain and GracefulStop took %v", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain and GracefulStop did not return")
	}
	for i := range 5 {
		if res := c.Send(context.Background(), "b", scheduler.Msg{To: "n.in", Data: "x"}); res != "B" {
			t.Errorf("message %d after A stopped: %v", i, res)
		}
	}
}

// TestDrainCutsWhatOutlastsItsBound: when Drain's context ends first, the
// messages still running are cancelled and fail as Aborted (they may have
// done part of their work: never to be re-sent elsewhere), and the stream
// ends even though its sender never closed its side.
func TestDrainCutsWhatOutlastsItsBound(t *testing.T) {
	n := &named{name: "A", release: make(chan struct{})}
	defer close(n.release)
	s := NewServer(n, "t")
	g, addr := serveOn(t, s)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(tokenContext(context.Background(), "t"), 30*time.Second)
	defer cancel()
	stream, err := transportpb.NewModuleClient(conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(message(1, `"slow"`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for n.holding.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer dcancel()
	start := time.Now()
	if err := s.Drain(dctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain: got %v, want it cut short", err)
	}
	var notice, answer *transportpb.Envelope
	for {
		env, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Errorf("the stream ended with %v, want Unavailable", err)
			}
			break
		}
		if env.GetSeq() == drainNotice {
			notice = env
		} else {
			answer = env
		}
	}
	if notice.GetCode() != int32(codes.Unavailable) {
		t.Errorf("drain notice: %v", notice)
	}
	if answer.GetSeq() != 1 || answer.GetCode() != int32(codes.Aborted) {
		t.Errorf("the message cut short got %v, want Aborted", answer)
	}
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("GracefulStop waited after the drain was cut short")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the cut drain and GracefulStop took %v", took)
	}
}
