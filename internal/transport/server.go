package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/internal/tracing"
	"github.com/tinymod/tinymod/internal/transport/transportpb"
	"github.com/tinymod/tinymod/module"
)

// DefaultMaxConcurrentPerStream is ServerConfig.MaxConcurrentPerStream's default.
const DefaultMaxConcurrentPerStream = 256

// drainNotice is the seq of the frame a draining server sends on each open
// Stream: seq 0 is never a message's (senders count from 1).
const drainNotice = 0

// Handler handles a message for this module, as the scheduler does.
type Handler interface {
	Module() module.Info
	Handle(ctx context.Context, msg scheduler.Msg) any
}

// ServerConfig tunes a Server. Zero values take the defaults.
type ServerConfig struct {
	// MaxConcurrentPerStream bounds the messages of one Stream handled at
	// once. Past it the stream reads ahead as many more (so that
	// cancellations behind them still arrive), plus the rest of the frame
	// it last read (a batch holds at most 128), and then stops reading
	// until one is answered, which holds the sender back through HTTP/2
	// flow control. Defaults to DefaultMaxConcurrentPerStream.
	MaxConcurrentPerStream int
	// Metrics, if not nil, counts the streams and what they carry.
	Metrics *Metrics
}

// Server serves the Module service for one replica.
type Server struct {
	transportpb.UnimplementedModuleServer
	h       Handler
	token   string
	limit   int
	work    *workers
	metrics *Metrics

	drainOnce sync.Once
	draining  chan struct{} // closed by Drain: streams take no new messages
	cutOnce   sync.Once
	cut       chan struct{} // closed when Drain gives up: streams cancel and end

	mu      sync.Mutex
	streams int           // Stream handlers running
	ended   chan struct{} // closed, and replaced, each time one returns
}

// NewServer returns the service; token, if not empty, is required of callers.
func NewServer(h Handler, token string) *Server { return NewServerWith(h, token, ServerConfig{}) }

// NewServerWith returns the service tuned by cfg.
func NewServerWith(h Handler, token string, cfg ServerConfig) *Server {
	if cfg.MaxConcurrentPerStream <= 0 {
		cfg.MaxConcurrentPerStream = DefaultMaxConcurrentPerStream
	}
	return &Server{h: h, token: token, limit: cfg.MaxConcurrentPerStream, work: newWorkers(), metrics: cfg.Metrics,
		draining: make(chan struct{}), cut: make(chan struct{}), ended: make(chan struct{})}
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g *grpc.Server) { transportpb.RegisterModuleServer(g, s) }

// Send delivers one message to this replica's scheduler.
func (s *Server) Send(ctx context.Context, m *transportpb.Message) (*transportpb.Result, error) {
	return s.handle(ctx, m)
}

// Drain ends every Stream, so that grpc.Server.GracefulStop, which waits for
// them, returns promptly. Each open stream, and each opened later, is told
// that this replica is draining; it refuses the messages that arrive after
// that as Unavailable (never handled, so the sender tries another replica),
// answers those it took before, and ends once the sender has stopped sending.
// When ctx ends first, the messages still running are cancelled, the streams
// end, and Drain returns ctx's error.
func (s *Server) Drain(ctx context.Context) error {
	s.drainOnce.Do(func() { close(s.draining) })
	for {
		s.mu.Lock()
		open, ended := s.streams, s.ended
		s.mu.Unlock()
		if open == 0 {
			return nil
		}
		select {
		case <-ended:
		case <-ctx.Done():
			s.cutOnce.Do(func() { close(s.cut) })
			return fmt.Errorf("drain: %d streams still open: %w", open, ctx.Err())
		}
	}
}

func (s *Server) streamStarted() {
	s.mu.Lock()
	s.streams++
	s.mu.Unlock()
	s.metrics.streamOpened(false)
}

func (s *Server) streamEnded() {
	s.metrics.streamEnded(false)
	s.mu.Lock()
	s.streams--
	close(s.ended)
	s.ended = make(chan struct{})
	s.mu.Unlock()
}

// taken is a message a Stream has read; its deadline (zero for none) counts
// from when it was read, however long it waits for a slot.
type taken struct {
	env      *transportpb.Envelope
	deadline time.Time
}

// serving is one Stream's state. Its reader takes each frame as it arrives
// and its handlers settle their own messages, under mu, so that a message
// passes through no goroutine but the reader and its handler; the Stream's
// own goroutine only waits for the drain, the cut or the end.
type serving struct {
	s        *Server
	stream   transportpb.Module_StreamServer
	out      *outbox // answers, refusals and the drain notice
	received *flow   // counts the frames read, if not nil

	mu       sync.Mutex
	changed  *sync.Cond                         // on mu: a slot freed, the stream drained, cut or ended
	running  map[uint64]context.CancelCauseFunc // handlers under way, by seq
	queue    []taken                            // read, waiting for a slot
	reading  bool                               // the sender has not closed its side
	draining bool                               // new messages are refused
	stopped  bool                               // cut, or the Stream returned: nothing more is read or started
	finished chan struct{}                      // closed once the sender is done and every message answered
}

// Stream serves many messages over one stream, each in its own goroutine, at
// most MaxConcurrentPerStream at a time.
func (s *Server) Stream(stream transportpb.Module_StreamServer) error {
	s.streamStarted()
	defer s.streamEnded()
	st := &serving{s: s, stream: stream, running: map[uint64]context.CancelCauseFunc{}, reading: true, finished: make(chan struct{})}
	st.changed = sync.NewCond(&st.mu)
	st.out = newOutbox(stream.Send, nil)
	st.out.sent, st.received = s.metrics.flows(false)
	// Batches both ways if the sender reads them; the header says that
	// this side does.
	if md, ok := metadata.FromIncomingContext(stream.Context()); ok && readsBatches(md) {
		st.out.batch.Store(true)
	}
	_ = stream.SendHeader(metadata.Pairs(batchKey, "1"))
	defer func() {
		st.mu.Lock()
		st.stopped = true
		st.changed.Broadcast()
		st.mu.Unlock()
	}()
	go st.read()

	drainStarts := s.draining
	for {
		select {
		case <-drainStarts:
			drainStarts = nil
			st.drain()
		case <-st.finished:
			st.end()
			return nil // the sender closed its side and every message is answered
		case <-s.cut:
			st.mu.Lock()
			st.stopped = true
			queued := st.queue
			st.queue = nil
			for _, cancel := range st.running {
				cancel(errStopped)
			}
			for len(st.running) > 0 {
				st.changed.Wait()
			}
			st.mu.Unlock()
			for _, m := range queued {
				st.refuse(m.env.GetSeq(), errDraining) // never started: the sender may try another replica
			}
			st.end()
			return status.Error(codes.Unavailable, "tinymod: the replica is stopping")
		}
	}
}

func (st *serving) send(env *transportpb.Envelope) { st.out.put(env) }

// end writes what waits to be written, and then nothing more: the Stream
// returns, after which gRPC takes no more of its frames.
func (st *serving) end() {
	st.out.wait()
	st.out.close(nil)
}

func (st *serving) refuse(seq uint64, err error) {
	s := status.Convert(err)
	st.send(&transportpb.Envelope{Seq: seq, Code: int32(s.Code()), Status: s.Message()})
}

// read takes frames until the stream ends. While the queue is full (and the
// stream not draining) it reads nothing, and flow control holds the sender
// back.
func (st *serving) read() {
	for {
		st.mu.Lock()
		for !st.stopped && !st.draining && len(st.queue) >= st.s.limit {
			st.changed.Wait()
		}
		stopped := st.stopped
		st.mu.Unlock()
		if stopped {
			return
		}
		env, err := st.stream.Recv()
		if err != nil {
			st.mu.Lock()
			st.reading = false
			if err != io.EOF {
				// The sender has gone: nobody waits for these answers.
				for _, cancel := range st.running {
					cancel(nil)
				}
				st.queue = nil
			}
			st.settledLocked()
			st.mu.Unlock()
			return
		}
		select {
		case <-st.s.draining: // a stream opened late takes nothing
			st.drain()
		default:
		}
		st.received.frame(env)
		each(env, st.takeOrRefuse)
	}
}

func (st *serving) takeOrRefuse(env *transportpb.Envelope) {
	if refusal := st.take(env); refusal != nil {
		st.refuse(env.GetSeq(), refusal)
	}
}

// take starts, queues or cancels what env carries, and returns why it is
// refused, if it is.
func (st *serving) take(env *transportpb.Envelope) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	seq := env.GetSeq()
	switch {
	case st.stopped:
		return nil // the Stream is ending: nobody reads an answer
	case env.GetCancel():
		if cancel := st.running[seq]; cancel != nil {
			cancel(nil)
		}
		st.queue = slices.DeleteFunc(st.queue, func(q taken) bool { return q.env.GetSeq() == seq })
		return nil
	case len(env.GetBatch()) > 0:
		return status.Error(codes.InvalidArgument, "a batch may not hold a batch")
	case st.draining:
		return errDraining
	case seq == drainNotice || st.running[seq] != nil || slices.ContainsFunc(st.queue, func(q taken) bool { return q.env.GetSeq() == seq }):
		return status.Errorf(codes.InvalidArgument, "seq %d is reserved or already in use", seq)
	}
	m := taken{env: env}
	if t := env.GetTimeout(); t > 0 {
		m.deadline = time.Now().Add(time.Duration(t))
	}
	if len(st.running) < st.s.limit {
		st.startLocked(m)
	} else {
		st.queue = append(st.queue, m)
	}
	return nil
}

// startLocked runs m's handler on a worker; the caller holds mu.
func (st *serving) startLocked(m taken) {
	seq := m.env.GetSeq()
	// One context per message hangs on the stream's, and goes with its answer.
	ctx, cancel := context.WithCancelCause(st.stream.Context())
	st.running[seq] = cancel
	st.s.work.run(func() {
		hctx, stopTimer := ctx, context.CancelFunc(func() {})
		if !m.deadline.IsZero() {
			hctx, stopTimer = context.WithDeadline(ctx, m.deadline)
		}
		res, err := st.s.handle(hctx, m.env.GetMessage())
		stopTimer()
		cancel(nil)
		out := &transportpb.Envelope{Seq: seq, Result: res}
		if err != nil {
			s := status.Convert(err)
			out.Code, out.Status = int32(s.Code()), s.Message()
		}
		st.send(out)
		st.finish(seq)
	})
}

// finish settles an answered message and starts the next one waiting.
func (st *serving) finish(seq uint64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.running, seq)
	if !st.stopped && len(st.queue) > 0 && len(st.running) < st.s.limit {
		next := st.queue[0]
		st.queue = st.queue[1:]
		st.startLocked(next)
	}
	st.changed.Broadcast()
	st.settledLocked()
}

// settledLocked closes finished once the sender is done and every message
// it sent is answered; the caller holds mu.
func (st *serving) settledLocked() {
	if !st.reading && len(st.running) == 0 && len(st.queue) == 0 {
		select {
		case <-st.finished:
		default:
			close(st.finished)
		}
	}
}

// drain refuses what waits, takes nothing more, and tells the sender.
func (st *serving) drain() {
	st.mu.Lock()
	if st.draining || st.stopped {
		st.mu.Unlock()
		return
	}
	st.draining = true
	queued := st.queue
	st.queue = nil
	st.changed.Broadcast()
	st.settledLocked()
	st.mu.Unlock()
	for _, m := range queued {
		st.refuse(m.env.GetSeq(), errDraining)
	}
	st.send(&transportpb.Envelope{Seq: drainNotice, Code: int32(codes.Unavailable), Status: errDraining.Error()})
}

// errDraining refuses a message that was not handled because the replica is
// stopping; the sender may send it to another replica.
var errDraining = status.Error(codes.Unavailable, "tinymod: the replica is draining")

// errStopped ends the messages still running when a drain runs out of time.
// They may have done part of their work, so they fail as Aborted, which a
// sender never re-sends elsewhere.
var errStopped = errors.New("tinymod: the replica stopped while the message was in flight")

func (s *Server) handle(ctx context.Context, m *transportpb.Message) (*transportpb.Result, error) {
	if m.GetModule() != s.h.Module().Name {
		return nil, status.Errorf(codes.FailedPrecondition, "this replica runs module %s, not %s", s.h.Module().Name, m.GetModule())
	}
	if m.GetDepth() < 0 {
		// A negative depth would slip under the cycle limit: refuse it as malformed.
		return nil, status.Errorf(codes.InvalidArgument, "message depth %d is negative", m.GetDepth())
	}
	var data any
	if len(m.GetData()) > 0 {
		if !json.Valid(m.GetData()) {
			return nil, status.Error(codes.InvalidArgument, "data is not JSON")
		}
		data = json.RawMessage(m.GetData())
	}
	ctx = scheduler.WithDepth(tracing.Extract(ctx, m.GetTrace()), int(m.GetDepth()))
	res := s.h.Handle(ctx, scheduler.Msg{To: m.GetTo(), From: m.GetFrom(), Data: data, ID: m.GetId()})
	if err, ok := res.(error); ok && err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		if errors.Is(context.Cause(ctx), errStopped) {
			return nil, status.Error(codes.Aborted, errStopped.Error())
		}
		// The sender's deadline or cancellation ended it: say so as such, so
		// the sender sees context.DeadlineExceeded, not a remote error text.
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if err, ok := res.(error); ok && err != nil {
		if errors.Is(err, scheduler.ErrNoNode) || errors.Is(err, scheduler.ErrNoPort) {
			return nil, status.Error(codes.NotFound, err.Error())
		}
		return &transportpb.Result{Error: &transportpb.Error{Message: err.Error(), Permanent: module.IsPermanent(err)}}, nil
	}
	out := &transportpb.Result{}
	if res != nil {
		raw, err := json.Marshal(res)
		if err != nil {
			return &transportpb.Result{Error: &transportpb.Error{Message: fmt.Sprintf("result is not JSON-encodable: %v", err), Permanent: true}}, nil
		}
		out.Data = raw
	}
	return out, nil
}
