package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/internal/tracing"
	"github.com/tinymod/tinymod/internal/transport/transportpb"
	"github.com/tinymod/tinymod/module"
)

// Defaults of ClientConfig.
const (
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultKeepaliveTime    = 30 * time.Second
	DefaultKeepaliveTimeout = 10 * time.Second
	DefaultResolveTTL       = time.Second
)

// ClientConfig tunes a Client. Zero values take the defaults.
type ClientConfig struct {
	// IdleTimeout closes the connection to a replica no message has gone to
	// for this long. Defaults to DefaultIdleTimeout.
	IdleTimeout time.Duration
	// KeepaliveTime is how long a connection may stay silent before the
	// client pings the replica; at least MinKeepaliveTime. Defaults to
	// DefaultKeepaliveTime.
	KeepaliveTime time.Duration
	// KeepaliveTimeout is how long a ping may go unanswered before the
	// replica is taken for dead: its connection closes and the messages in
	// flight on it fail. Defaults to DefaultKeepaliveTimeout.
	KeepaliveTimeout time.Duration
	// ResolveTTL is how long a module's replicas, as the resolver gave
	// them, serve later messages before the resolver is asked again. A
	// replica that does not take a message (Unavailable) makes the next
	// message ask at once. Negative asks for every message. Defaults to
	// DefaultResolveTTL.
	ResolveTTL time.Duration
	// Metrics, if not nil, counts the streams and what they carry.
	Metrics *Metrics
}

// Client sends messages to other modules; it implements scheduler.Transport.
type Client struct {
	resolver Resolver
	token    string
	cfg      ClientConfig
	next     atomic.Uint64

	resolvedMu sync.Mutex
	resolved   map[string]resolved // by module
	refreshing map[string]bool     // a sender asks the resolver about the module

	mu       sync.Mutex
	peers    map[string]*peer
	sweeping bool          // a sweeper runs while there are peers
	closed   chan struct{} // closed by Close
}

// peer is the connection to one replica and its streams.
type peer struct {
	addr string
	conn *grpc.ClientConn
	open sync.Mutex // one stream is opened at a time

	// Under Client.mu.
	mux   *mux              // the stream new messages take; nil or broken: open one
	muxes map[*mux]struct{} // every stream not ended yet, draining ones included
	used  time.Time         // last time a message was sent this way
}

// NewClient returns a client using resolver; token, if not empty, is sent.
func NewClient(resolver Resolver, token string) *Client {
	return NewClientWith(resolver, token, ClientConfig{})
}

// NewClientWith returns a client tuned by cfg.
func NewClientWith(resolver Resolver, token string, cfg ClientConfig) *Client {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.KeepaliveTime <= 0 {
		cfg.KeepaliveTime = DefaultKeepaliveTime
	}
	cfg.KeepaliveTime = max(cfg.KeepaliveTime, MinKeepaliveTime)
	if cfg.KeepaliveTimeout <= 0 {
		cfg.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	if cfg.ResolveTTL == 0 {
		cfg.ResolveTTL = DefaultResolveTTL
	}
	return &Client{resolver: resolver, token: token, cfg: cfg, peers: map[string]*peer{}, resolved: map[string]resolved{}, refreshing: map[string]bool{}, closed: make(chan struct{})}
}

// Close closes every connection; later sends fail.
func (c *Client) Close() {
	c.mu.Lock()
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	peers := c.peers
	c.peers = map[string]*peer{}
	c.mu.Unlock()
	for _, p := range peers {
		p.close()
	}
}

func (p *peer) close() {
	// Closing the connection ends every stream on it, and so their receivers.
	_ = p.conn.Close()
}

// peer returns the peer at addr, connecting if there is none, and marks it
// used; and the stream new messages to it take, if there is one.
func (c *Client) peer(addr string) (*peer, *mux, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
		return nil, nil, errors.New("the transport client is closed")
	default:
	}
	if p := c.peers[addr]; p != nil {
		p.used = time.Now()
		return p, p.mux, nil
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: c.cfg.KeepaliveTime, Timeout: c.cfg.KeepaliveTimeout}),
		grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(connWindow))
	if err != nil {
		return nil, nil, err
	}
	p := &peer{addr: addr, conn: conn, muxes: map[*mux]struct{}{}, used: time.Now()}
	c.peers[addr] = p
	if !c.sweeping {
		c.sweeping = true
		go c.sweep()
	}
	return p, nil, nil
}

// sweep closes the connections of idle peers until there are none left.
func (c *Client) sweep() {
	t := time.NewTicker(max(c.cfg.IdleTimeout/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
		}
		var idle []*peer
		c.mu.Lock()
		for addr, p := range c.peers {
			if time.Since(p.used) >= c.cfg.IdleTimeout && !p.inFlight() {
				delete(c.peers, addr)
				idle = append(idle, p)
			}
		}
		done := len(c.peers) == 0
		if done {
			c.sweeping = false
		}
		c.mu.Unlock()
		for _, p := range idle {
			p.close()
		}
		if done {
			return
		}
	}
}

// inFlight says whether a message waits for its answer from p; under Client.mu.
func (p *peer) inFlight() bool {
	for m := range p.muxes {
		if m.inFlight() > 0 {
			return true
		}
	}
	return false
}

// stream returns the open stream to addr, opening one if there is none or
// the last one takes no more messages.
func (c *Client) stream(ctx context.Context, addr string) (*mux, error) {
	p, m, err := c.peer(addr)
	if err != nil {
		return nil, err
	}
	if m != nil && m.broken() == nil {
		return m, nil // the usual case: no look at the connection's state
	}
	if err := waitReady(ctx, p.conn); err != nil {
		return nil, err
	}
	p.open.Lock()
	defer p.open.Unlock()
	c.mu.Lock()
	m = p.mux
	c.mu.Unlock()
	if m != nil && m.broken() == nil {
		return m, nil
	}
	sctx, cancel := context.WithCancel(withBatches(context.Background()))
	if c.token != "" {
		sctx = tokenContext(sctx, c.token)
	}
	stream, err := transportpb.NewModuleClient(p.conn).Stream(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	m = newMux(stream, cancel)
	m.out.sent, m.received = c.cfg.Metrics.flows(true)
	c.mu.Lock()
	if c.peers[addr] != p {
		c.mu.Unlock()
		cancel()
		return nil, status.Errorf(codes.Unavailable, "the connection to %s was closed", addr)
	}
	p.mux = m
	p.muxes[m] = struct{}{}
	c.mu.Unlock()
	c.cfg.Metrics.streamOpened(true)
	go func() {
		m.receive()
		c.ended(p, m)
		c.cfg.Metrics.streamEnded(true)
	}()
	return m, nil
}

// ended forgets a stream that has ended, and the peer with it once it has no
// stream left: the replica has gone, or is going.
func (c *Client) ended(p *peer, m *mux) {
	c.mu.Lock()
	delete(p.muxes, m)
	if p.mux == m {
		p.mux = nil
	}
	gone := p.mux == nil && len(p.muxes) == 0 && c.peers[p.addr] == p
	if gone {
		delete(c.peers, p.addr)
	}
	c.mu.Unlock()
	if gone {
		p.close()
	}
}

// waitReady waits, within ctx, for conn to connect.
func waitReady(ctx context.Context, conn *grpc.ClientConn) error {
	conn.Connect()
	for {
		switch s := conn.GetState(); s {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return status.Errorf(codes.Unavailable, "connection to %s: %s", conn.Target(), s)
		default:
			if !conn.WaitForStateChange(ctx, s) {
				return status.FromContextError(ctx.Err()).Err()
			}
		}
	}
}

// envelopeSlack is more than a frame adds to a message's data unless its
// names or trace are huge; past MaxMessageSize less this, Send weighs the frame.
const envelopeSlack = 64 << 10

// Send delivers msg to a node of targetModule and returns its result or error.
func (c *Client) Send(ctx context.Context, targetModule string, msg scheduler.Msg) any {
	data, err := json.Marshal(msg.Data)
	if err != nil {
		return module.Permanent(fmt.Errorf("message for %s is not JSON-encodable: %w", msg.To, err))
	}
	if len(data) > MaxMessageSize-envelopeSlack {
		// Near the limit, weigh the whole frame: one over it would end the
		// stream, and every message in flight on it.
		if n := proto.Size(&transportpb.Envelope{Seq: math.MaxUint64, Timeout: math.MaxInt64, Message: &transportpb.Message{
			Module: targetModule, To: msg.To, From: msg.From, Data: data, Depth: math.MaxInt32, Id: msg.ID, Trace: tracing.Inject(ctx),
		}}); n > MaxMessageSize {
			return module.Permanent(fmt.Errorf("message for %s is %d bytes on the wire, over the %d-byte limit", msg.To, n, MaxMessageSize))
		}
	}
	_, port, err := scheduler.SplitTarget(msg.To)
	if err != nil {
		return module.Permanent(err)
	}
	var addrs []string
	system := strings.HasPrefix(port, "_")
	if system {
		// System ports go to the leader: a reader would ignore a control action.
		if addr, ok := c.resolver.Leader(ctx, targetModule); ok {
			addrs = []string{addr}
		}
	} else {
		addrs = c.replicas(ctx, targetModule)
	}
	if len(addrs) == 0 {
		if ctx.Err() != nil {
			return decodeResult(nil, status.FromContextError(ctx.Err()).Err(), msg.To)
		}
		return fmt.Errorf("module %s has no reachable replica for %s", targetModule, msg.To)
	}
	req := &transportpb.Message{Module: targetModule, To: msg.To, From: msg.From, Data: data, Depth: int32(scheduler.Depth(ctx)), Id: msg.ID}
	req.Trace = tracing.Inject(ctx)
	start := int(c.next.Add(1))
	var last error
	first := addrs
	for round := range 2 {
		for i := range addrs {
			addr := addrs[(start+i)%len(addrs)]
			if round > 0 && slices.Contains(first, addr) {
				continue // tried already
			}
			m, err := c.stream(ctx, addr)
			if err == nil {
				var res *transportpb.Result
				res, err = m.send(ctx, req)
				if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
					return decodeResult(res, err, msg.To)
				}
			}
			if ctx.Err() != nil {
				return decodeResult(nil, status.FromContextError(ctx.Err()).Err(), msg.To)
			}
			last = err // the message never reached that replica: try the next one
			if status.Code(err) == codes.Unavailable {
				c.cfg.Metrics.notTaken()
			}
		}
		if round > 0 || system {
			break
		}
		// The replicas may have changed since they were resolved: ask again,
		// and try those not tried yet.
		c.forget(targetModule)
		addrs = c.replicas(ctx, targetModule)
	}
	return fmt.Errorf("module %s: no replica answered for %s: %w", targetModule, msg.To, last)
}

// resolved is a module's replicas as the resolver gave them, and when.
type resolved struct {
	addrs []string
	at    time.Time
}

// replicas returns the module's replicas, from the resolver at most every
// ResolveTTL: a look-up reads and copies the module's membership, which
// costs more than sending the message. While one sender asks the resolver,
// the others use what it said last.
func (c *Client) replicas(ctx context.Context, module string) []string {
	if c.cfg.ResolveTTL < 0 {
		return c.resolver.Replicas(ctx, module)
	}
	c.resolvedMu.Lock()
	r, ok := c.resolved[module]
	if ok && (time.Since(r.at) < c.cfg.ResolveTTL || c.refreshing[module]) {
		c.resolvedMu.Unlock()
		return r.addrs
	}
	lead := !c.refreshing[module]
	if lead {
		c.refreshing[module] = true
	}
	c.resolvedMu.Unlock()

	addrs := c.resolver.Replicas(ctx, module)
	if lead {
		c.resolvedMu.Lock()
		delete(c.refreshing, module)
		if len(addrs) > 0 {
			c.resolved[module] = resolved{addrs: addrs, at: time.Now()}
		} else {
			delete(c.resolved, module) // none: ask again next time
		}
		c.resolvedMu.Unlock()
	}
	return addrs
}

// forget makes the next message to module ask the resolver.
func (c *Client) forget(module string) {
	c.resolvedMu.Lock()
	delete(c.resolved, module)
	c.resolvedMu.Unlock()
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

// mux multiplexes messages over one Stream to one replica.
type mux struct {
	stream   transportpb.Module_StreamClient
	cancel   context.CancelFunc
	out      *outbox
	received *flow // counts the frames read, if not nil

	mu      sync.Mutex
	seq     uint64
	pending map[uint64]*call
	err     error // set once the stream takes no more messages: it broke, or the replica drains
}

// call is a message waiting for its answer.
type call struct {
	// answer gets the answer, or a refusal; it is closed when the stream
	// breaks after the message was written.
	answer   chan *transportpb.Envelope
	deadline time.Time // zero for none
	written  bool      // handed to the stream: the replica may have it
}

func newMux(stream transportpb.Module_StreamClient, cancel context.CancelFunc) *mux {
	m := &mux{stream: stream, cancel: cancel, pending: map[uint64]*call{}}
	m.out = newOutbox(stream.Send, m.unsent)
	m.out.prepare = m.handOver
	return m
}

// handOver is called just before envs are written: it leaves out the
// messages nobody waits for any more (their senders gave up, or the stream
// broke before they were written), marks the others written, and gives
// each its deadline as it is now.
func (m *mux) handOver(envs []*transportpb.Envelope) []*transportpb.Envelope {
	m.mu.Lock()
	defer m.mu.Unlock()
	kept := envs[:0]
	for _, env := range envs {
		if env.GetMessage() != nil {
			c := m.pending[env.GetSeq()]
			if c == nil {
				continue
			}
			c.written = true
			if !c.deadline.IsZero() {
				env.Timeout = max(int64(time.Until(c.deadline)), 1)
			}
		}
		kept = append(kept, env)
	}
	clear(envs[len(kept):])
	return kept
}

// unsent answers the messages among envs that could not be written as
// Unavailable: the replica never took them, so they may go to another.
func (m *mux) unsent(envs []*transportpb.Envelope, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, env := range envs {
		if env.GetMessage() == nil {
			continue
		}
		if c := m.pending[env.GetSeq()]; c != nil {
			delete(m.pending, env.GetSeq())
			c.answer <- refusal(env.GetSeq(), codes.Unavailable, err.Error())
		}
	}
}

func refusal(seq uint64, code codes.Code, msg string) *transportpb.Envelope {
	return &transportpb.Envelope{Seq: seq, Code: int32(code), Status: msg}
}

func (m *mux) broken() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func (m *mux) inFlight() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending)
}

// receive hands each result to its waiting sender until the stream ends.
func (m *mux) receive() {
	defer m.cancel()
	// The server's header says whether it reads batches; until it comes
	// (an older server sends it with its first answer), messages go alone.
	if md, err := m.stream.Header(); err == nil && readsBatches(md) {
		m.out.batch.Store(true)
	}
	for {
		env, err := m.stream.Recv()
		if err != nil {
			if status.Code(err) == codes.OK || err == io.EOF {
				err = status.Error(codes.Unavailable, "stream closed")
			}
			// A frame being written is written or failed first (its write
			// ends with the stream): a message is written when it is
			// marked so and not failed.
			m.out.writeMu.Lock()
			defer m.out.writeMu.Unlock()
			m.mu.Lock()
			if m.err == nil {
				m.err = err
			}
			for seq, c := range m.pending {
				delete(m.pending, seq)
				if c.written {
					close(c.answer) // the replica may have handled it
				} else {
					c.answer <- refusal(seq, codes.Unavailable, status.Convert(err).Message())
				}
			}
			m.mu.Unlock()
			return
		}
		m.received.frame(env)
		each(env, m.deliver)
	}
}

// deliver hands env to the sender waiting for it.
func (m *mux) deliver(env *transportpb.Envelope) {
	if env.GetSeq() == drainNotice {
		if env.GetCode() == int32(codes.Unavailable) {
			m.draining(env.GetStatus())
		}
		return
	}
	m.mu.Lock()
	c := m.pending[env.GetSeq()]
	delete(m.pending, env.GetSeq())
	m.mu.Unlock()
	if c != nil {
		c.answer <- env
	}
}

// draining takes no more messages on the stream, and tells the replica
// so by closing the sending side; the answers of the messages in flight
// still come back.
func (m *mux) draining(reason string) {
	m.mu.Lock()
	if m.err == nil {
		m.err = status.Error(codes.Unavailable, reason)
	}
	m.mu.Unlock()
	// Not on the receiving goroutine: a sender may be writing while flow
	// control waits for the replica to read. Messages still waiting to be
	// written are then answered Unavailable, never written after the close.
	go m.out.close(func() { _ = m.stream.CloseSend() })
}

// send sends one message and waits for its result, its refusal, the end of
// ctx (which cancels it on the other side too) or the stream breaking. An
// Unavailable error means the replica never took the message.
func (m *mux) send(ctx context.Context, req *transportpb.Message) (*transportpb.Result, error) {
	c := &call{answer: make(chan *transportpb.Envelope, 1)}
	c.deadline, _ = ctx.Deadline()
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return nil, status.Error(codes.Unavailable, status.Convert(m.err).Message())
	}
	m.seq++
	seq := m.seq
	m.pending[seq] = c
	m.mu.Unlock()
	m.out.put(&transportpb.Envelope{Seq: seq, Message: req}) // a failed write is answered Unavailable
	select {
	case res, ok := <-c.answer:
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
		written := m.pending[seq] == c && c.written
		delete(m.pending, seq)
		m.mu.Unlock()
		if written {
			// Not written yet, it never will be; written, it is cancelled there.
			m.out.put(&transportpb.Envelope{Seq: seq, Cancel: true})
		}
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}
