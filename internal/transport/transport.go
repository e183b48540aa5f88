// Package transport carries messages between modules over gRPC. Every replica
// serves the Module service; a sender spreads business messages over all the
// target module's replicas and sends system-port messages to its leader.
// Results, errors with their class (transient or permanent), deadlines,
// cancellation, message depth and IDs cross the wire.
package transport

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
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

// MaxMessageSize bounds one message on the wire, both ways.
const MaxMessageSize = 4 << 20

const tokenKey = "authorization"

// Handler handles a message for this module, as the scheduler does.
type Handler interface {
	Module() module.Info
	Handle(ctx context.Context, msg scheduler.Msg) any
}

// Server serves the Module service for one replica.
type Server struct {
	transportpb.UnimplementedModuleServer
	h     Handler
	token string
}

// NewServer returns the service; token, if not empty, is required of callers.
func NewServer(h Handler, token string) *Server { return &Server{h: h, token: token} }

// Register adds the service to a gRPC server, with the token check.
func (s *Server) Register(g *grpc.Server) { transportpb.RegisterModuleServer(g, s) }

// ServerOptions are the options the server needs: size limits and the token check.
func ServerOptions(token string) []grpc.ServerOption {
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize)}
	if token != "" {
		check := func(ctx context.Context, method string) error {
			if !strings.HasPrefix(method, "/tinymod.") {
				return nil // health checks stay open
			}
			md, _ := metadata.FromIncomingContext(ctx)
			got := ""
			if v := md.Get(tokenKey); len(v) > 0 {
				got = strings.TrimPrefix(v[0], "Bearer ")
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				return status.Error(codes.Unauthenticated, "tinymod: missing or wrong token")
			}
			return nil
		}
		opts = append(opts,
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
				if err := check(ctx, info.FullMethod); err != nil {
					return nil, err
				}
				return next(ctx, req)
			}),
			grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
				if err := check(ss.Context(), info.FullMethod); err != nil {
					return err
				}
				return next(srv, ss)
			}))
	}
	return opts
}

// Send delivers one message to this replica's scheduler.
func (s *Server) Send(ctx context.Context, m *transportpb.Message) (*transportpb.Result, error) {
	return s.handle(ctx, m)
}

// Stream serves many messages over one stream, each in its own goroutine.
func (s *Server) Stream(stream transportpb.Module_StreamServer) error {
	var (
		sendMu  sync.Mutex
		mu      sync.Mutex
		cancels = map[uint64]context.CancelFunc{}
		wg      sync.WaitGroup
	)
	defer wg.Wait()
	for {
		env, err := stream.Recv()
		if err != nil {
			mu.Lock()
			for _, cancel := range cancels {
				cancel()
			}
			mu.Unlock()
			return nil
		}
		if env.GetCancel() {
			mu.Lock()
			if cancel := cancels[env.GetSeq()]; cancel != nil {
				cancel()
			}
			mu.Unlock()
			continue
		}
		ctx, cancel := context.WithCancel(stream.Context())
		if t := env.GetTimeout(); t > 0 {
			ctx, cancel = context.WithTimeout(stream.Context(), time.Duration(t))
		}
		mu.Lock()
		cancels[env.GetSeq()] = cancel
		mu.Unlock()
		wg.Add(1)
		go func(seq uint64, m *transportpb.Message) {
			defer wg.Done()
			res, err := s.handle(ctx, m)
			cancel()
			mu.Lock()
			delete(cancels, seq)
			mu.Unlock()
			out := &transportpb.Envelope{Seq: seq, Result: res}
			if err != nil {
				st := status.Convert(err)
				out.Code, out.Status = int32(st.Code()), st.Message()
			}
			sendMu.Lock()
			_ = stream.Send(out)
			sendMu.Unlock()
		}(env.GetSeq(), env.GetMessage())
	}
}

func (s *Server) handle(ctx context.Context, m *transportpb.Message) (*transportpb.Result, error) {
	if m.GetModule() != s.h.Module().Name {
		return nil, status.Errorf(codes.FailedPrecondition, "this replica runs module %s, not %s", s.h.Module().Name, m.GetModule())
	}
	var data any
	if len(m.GetData()) > 0 {
		if !json.Valid(m.GetData()) {
			return nil, status.Error(codes.InvalidArgument, "data is not JSON")
		}
		data = json.RawMessage(m.GetData())
	}
	ctx = scheduler.WithDepth(ctx, int(m.GetDepth()))
	res := s.h.Handle(ctx, scheduler.Msg{To: m.GetTo(), From: m.GetFrom(), Data: data, ID: m.GetId()})
	if err, ok := res.(error); ok && err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
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

// Resolver says where a module's replicas are.
type Resolver interface {
	// Replicas returns the addresses of the module's live replicas.
	Replicas(module string) []string
	// Leader returns the address of the module's leader.
	Leader(module string) (string, bool)
}

// Client sends messages to other modules; it implements scheduler.Transport.
type Client struct {
	resolver Resolver
	token    string

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	muxes map[string]*mux
	next  atomic.Uint64
}

// NewClient returns a client using resolver; token, if not empty, is sent.
func NewClient(resolver Resolver, token string) *Client {
	return &Client{resolver: resolver, token: token, conns: map[string]*grpc.ClientConn{}, muxes: map[string]*mux{}}
}

// Close closes every connection.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, m := range c.muxes {
		m.close()
		delete(c.muxes, addr)
	}
	for addr, conn := range c.conns {
		_ = conn.Close()
		delete(c.conns, addr)
	}
}

func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn, ok := c.conns[addr]; ok {
		return conn, nil
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)))
	if err != nil {
		return nil, err
	}
	c.conns[addr] = conn
	return conn, nil
}

// Send delivers msg to a node of targetModule and returns its result or error.
func (c *Client) Send(ctx context.Context, targetModule string, msg scheduler.Msg) any {
	data, err := json.Marshal(msg.Data)
	if err != nil {
		return module.Permanent(fmt.Errorf("message for %s is not JSON-encodable: %w", msg.To, err))
	}
	if len(data) > MaxMessageSize {
		return module.Permanent(fmt.Errorf("message for %s is %d bytes, over the %d-byte limit", msg.To, len(data), MaxMessageSize))
	}
	_, port, err := scheduler.SplitTarget(msg.To)
	if err != nil {
		return module.Permanent(err)
	}
	var addrs []string
	if strings.HasPrefix(port, "_") {
		// System ports go to the leader: a reader would ignore a control action.
		if addr, ok := c.resolver.Leader(targetModule); ok {
			addrs = []string{addr}
		}
	} else {
		addrs = c.resolver.Replicas(targetModule)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("module %s has no reachable replica for %s", targetModule, msg.To)
	}
	req := &transportpb.Message{Module: targetModule, To: msg.To, From: msg.From, Data: data, Depth: int32(scheduler.Depth(ctx)), Id: msg.ID}
	start := int(c.next.Add(1))
	var last error
	for i := range addrs {
		addr := addrs[(start+i)%len(addrs)]
		m, err := c.mux(addr)
		if err != nil {
			last = err
			continue
		}
		res, err := m.send(ctx, req)
		if status.Code(err) == codes.Unavailable && ctx.Err() == nil {
			last = err // never reached the replica: try the next one
			continue
		}
		return decodeResult(res, err, msg.To)
	}
	return fmt.Errorf("module %s: no replica answered for %s: %w", targetModule, msg.To, last)
}

func decodeResult(res *transportpb.Result, err error, to string) any {
	if err != nil {
		switch status.Code(err) {
		case codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition, codes.Unauthenticated, codes.PermissionDenied, codes.ResourceExhausted:
			return module.Permanent(fmt.Errorf("send to %s: %s", to, status.Convert(err).Message()))
		case codes.Canceled:
			return context.Canceled
		case codes.DeadlineExceeded:
			return context.DeadlineExceeded
		}
		return fmt.Errorf("send to %s: %w", to, err)
	}
	if e := res.GetError(); e != nil {
		err := errors.New(e.GetMessage())
		if e.GetPermanent() {
			return module.Permanent(err)
		}
		return err
	}
	if len(res.GetData()) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(res.GetData(), &v); err != nil {
		return module.Permanent(fmt.Errorf("result from %s is not JSON: %w", to, err))
	}
	return v
}

func tokenContext(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, tokenKey, "Bearer "+token)
}

// mux multiplexes messages over one Stream to one replica.
type mux struct {
	stream transportpb.Module_StreamClient
	cancel context.CancelFunc

	sendMu  sync.Mutex
	mu      sync.Mutex
	seq     uint64
	pending map[uint64]chan *transportpb.Envelope
	err     error // set once the stream has broken
}

// mux returns the open stream to addr, opening one if there is none or the
// last one broke.
func (c *Client) mux(addr string) (*mux, error) {
	conn, err := c.conn(addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.muxes[addr]; m != nil && m.broken() == nil {
		return m, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	if c.token != "" {
		ctx = tokenContext(ctx, c.token)
	}
	stream, err := transportpb.NewModuleClient(conn).Stream(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	m := &mux{stream: stream, cancel: cancel, pending: map[uint64]chan *transportpb.Envelope{}}
	go m.receive()
	c.muxes[addr] = m
	return m, nil
}

func (m *mux) broken() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func (m *mux) close() { m.cancel() }

// receive hands each result to its waiting sender until the stream breaks.
func (m *mux) receive() {
	for {
		env, err := m.stream.Recv()
		if err != nil {
			if status.Code(err) == codes.OK || err == io.EOF {
				err = status.Error(codes.Unavailable, "stream closed")
			}
			m.mu.Lock()
			m.err = err
			for seq, ch := range m.pending {
				close(ch)
				delete(m.pending, seq)
			}
			m.mu.Unlock()
			return
		}
		m.mu.Lock()
		ch := m.pending[env.GetSeq()]
		delete(m.pending, env.GetSeq())
		m.mu.Unlock()
		if ch != nil {
			ch <- env
		}
	}
}

// send sends one message and waits for its result, its refusal, the end of
// ctx (which cancels it on the other side too) or the stream breaking.
func (m *mux) send(ctx context.Context, req *transportpb.Message) (*transportpb.Result, error) {
	ch := make(chan *transportpb.Envelope, 1)
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return nil, m.err
	}
	m.seq++
	seq := m.seq
	m.pending[seq] = ch
	m.mu.Unlock()
	env := &transportpb.Envelope{Seq: seq, Message: req}
	if deadline, ok := ctx.Deadline(); ok {
		env.Timeout = max(int64(time.Until(deadline)), 1)
	}
	m.sendMu.Lock()
	err := m.stream.Send(env)
	m.sendMu.Unlock()
	if err != nil {
		m.mu.Lock()
		delete(m.pending, seq)
		m.mu.Unlock()
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	select {
	case res, ok := <-ch:
		if !ok {
			// The replica may have handled it: fail it, never re-send it elsewhere.
			return nil, status.Errorf(codes.Aborted, "the connection to the replica broke while the message was in flight: %v", m.broken())
		}
		if res.GetCode() != int32(codes.OK) {
			return nil, status.Error(codes.Code(res.GetCode()), res.GetStatus())
		}
		return res.GetResult(), nil
	case <-ctx.Done():
		m.mu.Lock()
		delete(m.pending, seq)
		m.mu.Unlock()
		m.sendMu.Lock()
		_ = m.stream.Send(&transportpb.Envelope{Seq: seq, Cancel: true})
		m.sendMu.Unlock()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}
