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
	// cancellations behind them still arrive) and then stops reading until
	// one is answered, which holds the sender back through HTTP/2 flow
	// control. Defaults to DefaultMaxConcurrentPerStream.
	MaxConcurrentPerStream int
}

// Server serves the Module service for one replica.
type Server struct {
	transportpb.UnimplementedModuleServer
	h     Handler
	token string
	limit int
	work  *workers

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
	return &Server{h: h, token: token, limit: cfg.MaxConcurrentPerStream, work: newWorkers(),
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
}

func (s *Server) streamEnded() {
	s.mu.Lock()
	s.streams--
	close(s.ended)
	s.ended = make(chan struct{})
	s.mu.Unlock()
}

// frame is one read off a Stream.
type frame struct {
	env *transportpb.Envelope
	err error
}

// taken is a message a Stream has read; its deadline (zero for none) counts
// from when it was read, however long it waits for a slot.
type taken struct {
	env      *transportpb.Envelope
	deadline time.Time
}

// Stream serves many messages over one stream, each in its own goroutine, at
// most MaxConcurrentPerStream at a time.
func (s *Server) Stream(stream transportpb.Module_StreamServer) error {
	s.streamStarted()
	defer s.streamEnded()

	// The reader hands over one frame at a time: while the loop below takes
	// none, nothing more is read and flow control holds the sender back.
	frames := make(chan frame)
	returned := make(chan struct{})
	defer close(returned)
	go func() {
		for {
			env, err := stream.Recv()
			select {
			case frames <- frame{env, err}:
			case <-returned:
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var (
		sendMu   sync.Mutex
		running  = map[uint64]context.CancelCauseFunc{} // only this goroutine touches it
		queue    []taken                                // read, waiting for a slot
		answered = make(chan uint64, s.limit)           // never blocks: one per running handler
		reading  = true
		draining = false
	)
	send := func(env *transportpb.Envelope) {
		sendMu.Lock()
		_ = stream.Send(env)
		sendMu.Unlock()
	}
	refuse := func(seq uint64, err error) {
		st := status.Convert(err)
		send(&transportpb.Envelope{Seq: seq, Code: int32(st.Code()), Status: st.Message()})
	}
	start := func(m taken) {
		seq := m.env.GetSeq()
		// One context per message hangs on the stream's, and goes with its answer.
		ctx, cancel := context.WithCancelCause(stream.Context())
		running[seq] = cancel
		s.work.run(func() {
			hctx, stopTimer := ctx, context.CancelFunc(func() {})
			if !m.deadline.IsZero() {
				hctx, stopTimer = context.WithDeadline(ctx, m.deadline)
			}
			res, err := s.handle(hctx, m.env.GetMessage())
			stopTimer()
			cancel(nil)
			out := &transportpb.Envelope{Seq: seq, Result: res}
			if err != nil {
				st := status.Convert(err)
				out.Code, out.Status = int32(st.Code()), st.Message()
			}
			send(out)
			answered <- seq
		})
	}
	finish := func(seq uint64) {
		delete(running, seq)
		if len(queue) > 0 && len(running) < s.limit {
			next := queue[0]
			queue = queue[1:]
			start(next)
		}
	}
	drain := func() {
		draining = true
		for _, m := range queue {
			refuse(m.env.GetSeq(), errDraining)
		}
		queue = nil
		send(&transportpb.Envelope{Seq: drainNotice, Code: int32(codes.Unavailable), Status: errDraining.Error()})
	}
	drainStarts := s.draining
	for {
		if !reading && len(running) == 0 && len(queue) == 0 {
			return nil // the sender closed its side and every message is answered
		}
		select {
		case <-drainStarts: // before anything else, so a stream opened late takes nothing
			drainStarts = nil
			drain()
			continue
		default:
		}
		var in <-chan frame
		if reading && (draining || len(queue) < s.limit) {
			in = frames
		}
		select {
		case f := <-in:
			if f.err != nil {
				reading = false
				if f.err != io.EOF {
					// The sender has gone: nobody waits for these answers.
					for _, cancel := range running {
						cancel(nil)
					}
					queue = nil
				}
				continue
			}
			env := f.env
			seq := env.GetSeq()
			switch {
			case env.GetCancel():
				if cancel := running[seq]; cancel != nil {
					cancel(nil)
				}
				queue = slices.DeleteFunc(queue, func(q taken) bool { return q.env.GetSeq() == seq })
			case draining:
				refuse(seq, errDraining)
			case seq == drainNotice || running[seq] != nil || slices.ContainsFunc(queue, func(q taken) bool { return q.env.GetSeq() == seq }):
				refuse(seq, status.Errorf(codes.InvalidArgument, "seq %d is reserved or already in use", seq))
			default:
				m := taken{env: env}
				if t := env.GetTimeout(); t > 0 {
					m.deadline = time.Now().Add(time.Duration(t))
				}
				if len(running) < s.limit {
					start(m)
				} else {
					queue = append(queue, m)
				}
			}
		case seq := <-answered:
			finish(seq)
		case <-drainStarts:
			drainStarts = nil
			drain()
		case <-s.cut:
			for _, cancel := range running {
				cancel(errStopped)
			}
			for len(running) > 0 {
				delete(running, <-answered)
			}
			return status.Error(codes.Unavailable, "tinymod: the replica is stopping")
		}
	}
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
