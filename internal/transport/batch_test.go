package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
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

// echoData answers each message with its own data.
type echoData struct{}

func (echoData) Module() module.Info { return module.Info{Name: "b"} }
func (echoData) Handle(_ context.Context, msg scheduler.Msg) any {
	return msg.Data
}

// frameCounter counts, at the server, the frames of every Stream each way
// and the envelopes they carry.
type frameCounter struct {
	framesIn, envsIn, framesOut, envsOut atomic.Int64
}

func (c *frameCounter) count(frames, envs *atomic.Int64, m any) {
	env := m.(*transportpb.Envelope)
	frames.Add(1)
	envs.Add(int64(max(len(env.GetBatch()), 1)))
}

type countingStream struct {
	grpc.ServerStream
	c *frameCounter
}

func (s countingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.c.count(&s.c.framesIn, &s.c.envsIn, m)
	}
	return err
}

func (s countingStream) SendMsg(m any) error {
	s.c.count(&s.c.framesOut, &s.c.envsOut, m)
	return s.ServerStream.SendMsg(m)
}

// serveCounting serves srv's Stream behind a frame counter.
func serveCounting(t *testing.T, srv transportpb.ModuleServer) (string, *frameCounter) {
	t.Helper()
	c := &frameCounter{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
		return next(srv, countingStream{ss, c})
	}))
	transportpb.RegisterModuleServer(g, srv)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return ln.Addr().String(), c
}

// sendConcurrently sends n messages from each of conc goroutines, each with
// its own data, and fails the test unless each comes back as its answer.
func sendConcurrently(t *testing.T, client *Client, conc, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for g := range conc {
		wg.Go(func() {
			for i := range n {
				want := fmt.Sprintf("%d-%d", g, i)
				got := client.Send(ctx, "b", scheduler.Msg{To: "n.in", From: "a.out", Data: want})
				if got != want {
					t.Errorf("message %s came back as %v", want, got)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestConcurrentMessagesShareFrames: messages sent at once to one replica
// share frames both ways, and each still gets its own answer.
func TestConcurrentMessagesShareFrames(t *testing.T) {
	addr, c := serveCounting(t, NewServer(echoData{}, ""))
	client := NewClient(fixedResolver(addr), "")
	defer client.Close()

	const conc, n = 64, 50
	sendConcurrently(t, client, conc, n)
	if got := c.envsIn.Load(); got != conc*n {
		t.Fatalf("the server read %d messages, want %d", got, conc*n)
	}
	t.Logf("%d messages in %d frames; %d answers in %d frames", c.envsIn.Load(), c.framesIn.Load(), c.envsOut.Load(), c.framesOut.Load())
	if c.framesIn.Load() >= c.envsIn.Load() {
		t.Errorf("every message took a frame of its own (%d frames): none were batched", c.framesIn.Load())
	}
	if c.framesOut.Load() >= c.envsOut.Load() {
		t.Errorf("every answer took a frame of its own (%d frames): none were batched", c.framesOut.Load())
	}
}

// TestOlderClientGetsNoBatches: a client that has not said it reads
// batches gets every answer in a frame of its own.
func TestOlderClientGetsNoBatches(t *testing.T) {
	addr, c := serveCounting(t, NewServer(echoData{}, ""))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := transportpb.NewModuleClient(conn).Stream(ctx) // no batch metadata
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	go func() {
		for i := range n {
			_ = stream.Send(message(uint64(i+1), fmt.Sprintf(`"m%d"`, i+1)))
		}
		_ = stream.CloseSend()
	}()
	seen := map[uint64]bool{}
	for {
		env, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(env.GetBatch()) > 0 {
			t.Fatalf("an older client got a batch of %d answers", len(env.GetBatch()))
		}
		if want := fmt.Sprintf(`"m%d"`, env.GetSeq()); string(env.GetResult().GetData()) != want {
			t.Fatalf("answer %d is %q, want %s", env.GetSeq(), env.GetResult().GetData(), want)
		}
		seen[env.GetSeq()] = true
	}
	if len(seen) != n {
		t.Fatalf("%d answers, want %d", len(seen), n)
	}
	if c.framesOut.Load() != n {
		t.Fatalf("%d frames out for %d answers", c.framesOut.Load(), n)
	}
}

// olderServer answers every message of a Stream as a server that knows no
// batches does: it sends no header before its first answer, and takes an
// envelope with a batch for what it looks like to it, a message with seq 0.
type olderServer struct {
	transportpb.UnimplementedModuleServer
	batches atomic.Int64
}

func (s *olderServer) Stream(stream transportpb.Module_StreamServer) error {
	var mu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		env, err := stream.Recv()
		if err != nil {
			return nil
		}
		if env.GetSeq() == 0 {
			s.batches.Add(1)
			continue
		}
		wg.Go(func() {
			mu.Lock()
			defer mu.Unlock()
			_ = stream.Send(&transportpb.Envelope{Seq: env.GetSeq(), Result: &transportpb.Result{Data: env.GetMessage().GetData()}})
		})
	}
}

// TestOlderServerGetsNoBatches: a client sends no batch to a server that
// has not said it reads them.
func TestOlderServerGetsNoBatches(t *testing.T) {
	srv := &olderServer{}
	addr, c := serveCounting(t, srv)
	client := NewClient(fixedResolver(addr), "")
	defer client.Close()
	sendConcurrently(t, client, 64, 20)
	if srv.batches.Load() > 0 || c.framesIn.Load() != c.envsIn.Load() {
		t.Fatalf("an older server got %d batches (%d frames for %d messages)", srv.batches.Load(), c.framesIn.Load(), c.envsIn.Load())
	}
}

// TestNestedBatchIsRefused: a batch inside a batch is refused, and the
// messages around it are answered.
func TestNestedBatchIsRefused(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := newFakeStream(ctx)
	s := NewServer(answer{}, "")
	done := make(chan error, 1)
	go func() { done <- s.Stream(stream) }()
	stream.in <- &transportpb.Envelope{Batch: []*transportpb.Envelope{
		message(1, `1`),
		{Batch: []*transportpb.Envelope{message(2, `2`)}},
		message(3, `3`),
	}}
	close(stream.in)
	got := map[uint64]int32{}
	for range 3 {
		env := stream.answer(t)
		got[env.GetSeq()] = env.GetCode()
	}
	want := map[uint64]int32{1: int32(codes.OK), 0: int32(codes.InvalidArgument), 3: int32(codes.OK)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("answers by seq (code): %v, want %v", got, want)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// failingClientStream is a client stream whose every write fails.
type failingClientStream struct {
	grpc.ClientStream
}

func (failingClientStream) Send(*transportpb.Envelope) error { return io.ErrClosedPipe }

func (failingClientStream) Recv() (*transportpb.Envelope, error) { return nil, io.ErrClosedPipe }

// TestUnwrittenMessageIsUnavailable: a message whose frame could not be
// written fails as Unavailable, which a sender may take to another replica.
func TestUnwrittenMessageIsUnavailable(t *testing.T) {
	m := newMux(failingClientStream{}, func() {})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := m.send(ctx, &transportpb.Message{Module: "b", To: "n.in"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), io.ErrClosedPipe.Error()) {
		t.Fatalf("err = %v, want Unavailable with the write's error", err)
	}
	if n := m.inFlight(); n != 0 {
		t.Fatalf("%d messages left pending", n)
	}
}

// TestOutboxWriterHandsOn: a sender that finds others' envelopes waiting
// writes a bounded number of frames for them, then returns, and the rest
// are still written.
func TestOutboxWriterHandsOn(t *testing.T) {
	const extra = 3 * maxFlushes
	var o *outbox
	var writes atomic.Int64
	firstReturned := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o = newOutbox(func(*transportpb.Envelope) error {
		n := writes.Add(1)
		if n <= extra {
			o.put(&transportpb.Envelope{Seq: uint64(n + 1)}) // another sender's, while this one writes
		}
		if n > maxFlushes {
			select {
			case <-firstReturned:
			case <-ctx.Done():
				t.Error("the first sender is still writing others' envelopes after", maxFlushes, "frames")
			}
		}
		return nil
	}, nil)
	o.put(&transportpb.Envelope{Seq: 1})
	close(firstReturned)
	o.wait()
	if got := writes.Load(); got != extra+1 {
		t.Fatalf("%d envelopes written, want %d", got, extra+1)
	}
}

// TestOutboxBatchBounds: a frame holds at most maxBatchLen envelopes and
// about maxBatchBytes, and an envelope bigger than that goes alone.
func TestOutboxBatchBounds(t *testing.T) {
	var frames []int
	release := make(chan struct{})
	o := newOutbox(func(env *transportpb.Envelope) error {
		if env.GetSeq() == 1 {
			<-release // the first write holds the others back, so they queue
		}
		frames = append(frames, max(len(env.GetBatch()), 1))
		return nil
	}, nil)
	o.batch.Store(true)
	go o.put(&transportpb.Envelope{Seq: 1})
	for deadline := time.Now().Add(10 * time.Second); ; {
		o.mu.Lock()
		writing := o.writing && len(o.queue) == 0
		o.mu.Unlock()
		if writing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first envelope is not being written")
		}
		time.Sleep(time.Millisecond)
	}
	big := func(n int) *transportpb.Envelope {
		return &transportpb.Envelope{Seq: 2, Message: &transportpb.Message{Data: make([]byte, n)}}
	}
	for range maxBatchLen + 2 {
		o.put(&transportpb.Envelope{Seq: 2})
	}
	o.put(big(40 << 10))
	o.put(big(40 << 10))
	o.put(big(1 << 20))
	o.put(&transportpb.Envelope{Seq: 2})
	close(release)
	o.wait()
	want := []int{1, maxBatchLen, 3, 1, 1, 1}
	if fmt.Sprint(frames) != fmt.Sprint(want) {
		t.Fatalf("frames of %v envelopes, want %v", frames, want)
	}
	var total int
	for _, f := range frames {
		total += f
	}
	if total != maxBatchLen+7 {
		t.Fatalf("%d envelopes written, want %d", total, maxBatchLen+7)
	}
}

// scriptedClientStream is the client side of a Stream whose first Send
// holds until released, whose Recv fails once broken is closed, and which
// fails the test if anything is written after CloseSend.
type scriptedClientStream struct {
	grpc.ClientStream
	t        *testing.T
	release  chan struct{}
	broken   chan struct{}
	mu       sync.Mutex
	sent     []uint64
	closed   bool
	inSend   chan struct{} // closed when the first Send starts
	inSendOK sync.Once
	failHeld bool // the held write fails if the stream broke while it waited
}

func newScriptedClientStream(t *testing.T) *scriptedClientStream {
	return &scriptedClientStream{t: t, release: make(chan struct{}), broken: make(chan struct{}), inSend: make(chan struct{})}
}

func (s *scriptedClientStream) Header() (metadata.MD, error) {
	return metadata.Pairs(batchKey, "1"), nil
}

func (s *scriptedClientStream) Send(env *transportpb.Envelope) error {
	select {
	case <-s.broken:
		return io.EOF // a write that starts after the stream broke fails
	default:
	}
	s.inSendOK.Do(func() { close(s.inSend) })
	select {
	case <-s.release:
	case <-time.After(10 * time.Second):
		s.t.Error("the first write was never released")
	}
	select {
	case <-s.broken:
		if s.failHeld {
			return io.EOF
		}
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.t.Errorf("envelope %d written after CloseSend", env.GetSeq())
	}
	s.sent = append(s.sent, env.GetSeq())
	return nil
}

func (s *scriptedClientStream) CloseSend() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func (s *scriptedClientStream) Recv() (*transportpb.Envelope, error) {
	<-s.broken
	return nil, status.Error(codes.Unavailable, "connection reset")
}

// startScripted starts a mux on a scripted stream, with its receiving side
// (receiving is closed when that ends), and a first message that is being
// written when it returns.
func startScripted(t *testing.T, failHeld bool) (stream *scriptedClientStream, m *mux, receiving chan struct{}, first <-chan error) {
	stream = newScriptedClientStream(t)
	stream.failHeld = failHeld
	m = newMux(stream, func() {})
	receiving = make(chan struct{})
	go func() { m.receive(); close(receiving) }()
	first = sendAsync(t, m)
	<-stream.inSend
	return stream, m, receiving, first
}

// sendAsync sends a message on m, within 10 s, and returns its error when it has one.
func sendAsync(t *testing.T, m *mux) <-chan error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { _, err := m.send(ctx, &transportpb.Message{Module: "b", To: "n.in"}); done <- err }()
	return done
}

// TestQueuedMessageOfABrokenStreamIsUnavailable: when the stream breaks,
// a message written may have been handled and fails as Aborted, but one
// still waiting behind it was never written: it fails as Unavailable (so
// the sender may take it to another replica) and is never written.
func TestQueuedMessageOfABrokenStreamIsUnavailable(t *testing.T) {
	stream, m, receiving, first := startScripted(t, false)
	second := sendAsync(t, m)
	for deadline := time.Now().Add(10 * time.Second); m.inFlight() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second message never waited")
		}
	}
	close(stream.broken)
	close(stream.release) // the first write ends, as a write does when its stream breaks
	<-receiving
	if err := <-second; status.Code(err) != codes.Unavailable {
		t.Errorf("the message never written failed with %v, want Unavailable", err)
	}
	if err := <-first; status.Code(err) != codes.Aborted {
		t.Errorf("the message written failed with %v, want Aborted", err)
	}
	m.out.wait()
	stream.mu.Lock()
	defer stream.mu.Unlock()
	if fmt.Sprint(stream.sent) != "[1]" {
		t.Errorf("written: %v, want only the first message", stream.sent)
	}
}

// TestDrainingWritesNothingAfterCloseSend: a drain notice closes the
// sending side once the frame being written is out; the messages waiting
// behind it fail as Unavailable and are never written after the close.
func TestDrainingWritesNothingAfterCloseSend(t *testing.T) {
	for range 20 {
		stream := newScriptedClientStream(t)
		m := newMux(stream, func() {})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		first := make(chan error, 1)
		go func() { _, err := m.send(ctx, &transportpb.Message{Module: "b", To: "n.in"}); first <- err }()
		<-stream.inSend
		second := make(chan error, 1)
		go func() { _, err := m.send(ctx, &transportpb.Message{Module: "b", To: "n.in"}); second <- err }()
		for deadline := time.Now().Add(10 * time.Second); m.inFlight() < 2; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the second message never waited")
			}
		}
		m.deliver(&transportpb.Envelope{Seq: drainNotice, Code: int32(codes.Unavailable), Status: "draining"})
		close(stream.release)
		m.out.wait() // the second message is written before the close, or failed
		stream.mu.Lock()
		wrote := len(stream.sent)
		stream.mu.Unlock()
		if wrote == 1 {
			if err := <-second; status.Code(err) != codes.Unavailable {
				t.Errorf("the message never written failed with %v, want Unavailable", err)
			}
		}
		cancel()
		<-first
		close(stream.broken)
	}
}

// TestFailedWriteOfABrokenStreamIsUnavailable: a frame whose write fails
// because the stream broke under it was never sent: its message fails as
// Unavailable, however the failed write and the broken read interleave.
func TestFailedWriteOfABrokenStreamIsUnavailable(t *testing.T) {
	stream, _, receiving, first := startScripted(t, true)
	close(stream.broken)
	// Give the reading side the chance to act before the write fails, as
	// it would on a real stream; whichever goes first, the answer is the same.
	select {
	case <-receiving:
	case <-time.After(50 * time.Millisecond):
	}
	close(stream.release)
	if err := <-first; status.Code(err) != codes.Unavailable {
		t.Errorf("the message whose write failed got %v, want Unavailable", err)
	}
	<-receiving
}

// TestFrameOverTheLimitIsRefusedBeforeItIsSent: a message whose data fits
// the limit but whose frame does not is refused at once as permanent; it
// never ends the stream the other messages share.
func TestFrameOverTheLimitIsRefusedBeforeItIsSent(t *testing.T) {
	addr, c := serveCounting(t, NewServer(echoData{}, ""))
	client := NewClient(fixedResolver(addr), "")
	defer client.Close()
	sendConcurrently(t, client, 1, 1) // the stream is open
	big := json.RawMessage(`"` + strings.Repeat("x", MaxMessageSize-8) + `"`)
	res := client.Send(context.Background(), "b", scheduler.Msg{To: "n.in", From: "a.out", Data: big})
	if err, ok := res.(error); !ok || !module.IsPermanent(err) || !strings.Contains(err.Error(), "on the wire") {
		t.Fatalf("got %v, want a permanent error naming the frame's size", res)
	}
	sendConcurrently(t, client, 4, 10)
	if got := c.envsIn.Load(); got != 41 {
		t.Fatalf("the server read %d messages, want 41", got)
	}
}
