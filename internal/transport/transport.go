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
	"strings"
	"sync"
	"sync/atomic"

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
		opts = append(opts, grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
			if !strings.HasPrefix(info.FullMethod, "/tinymod.") {
				return next(ctx, req) // health checks stay open
			}
			md, _ := metadata.FromIncomingContext(ctx)
			got := ""
			if v := md.Get(tokenKey); len(v) > 0 {
				got = strings.TrimPrefix(v[0], "Bearer ")
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				return nil, status.Error(codes.Unauthenticated, "tinymod: missing or wrong token")
			}
			return next(ctx, req)
		}))
	}
	return opts
}

// Send delivers one message to this replica's scheduler.
func (s *Server) Send(ctx context.Context, m *transportpb.Message) (*transportpb.Result, error) {
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
	next  atomic.Uint64
}

// NewClient returns a client using resolver; token, if not empty, is sent.
func NewClient(resolver Resolver, token string) *Client {
	return &Client{resolver: resolver, token: token, conns: map[string]*grpc.ClientConn{}}
}

// Close closes every connection.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
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
	if c.token != "" {
		ctx = tokenContext(ctx, c.token)
	}
	req := &transportpb.Message{Module: targetModule, To: msg.To, From: msg.From, Data: data, Depth: int32(scheduler.Depth(ctx)), Id: msg.ID}
	start := int(c.next.Add(1))
	var last error
	for i := range addrs {
		addr := addrs[(start+i)%len(addrs)]
		conn, err := c.conn(addr)
		if err != nil {
			last = err
			continue
		}
		res, err := transportpb.NewModuleClient(conn).Send(ctx, req)
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
