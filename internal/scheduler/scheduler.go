package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/clock"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/module"
)

// DefaultMaxDepth bounds how many hops one message may take, so cycles end.
const DefaultMaxDepth = 256

// StatusWriter persists node status on the leader.
type StatusWriter interface {
	// UpdateStatus applies fn to a fresh copy of the node, whose Status.Metadata
	// is never nil, and writes the status if it changed. fn may run again after a
	// write conflict. It returns once the change is persisted or has failed.
	UpdateStatus(ctx context.Context, node string, fn func(*v1alpha1.TinyNode) error) error
	// Refresh asks for the node's status to be rendered again and written if it changed.
	Refresh(node string)
}

// Transport carries messages to nodes of other modules.
type Transport interface {
	Send(ctx context.Context, targetModule string, msg Msg) any
}

// Lookup finds a TinyNode of the namespace by name, of any module.
type Lookup func(name string) (*v1alpha1.TinyNode, bool)

// Msg is a message for "<node>.<port>".
type Msg struct {
	// To is "<node>.<port>".
	To string
	// From is "<node>.<port>" of the sender, empty for an external message.
	From string
	// Data is the payload: a Go value or, from outside, JSON.
	Data any
	// ID identifies the message for idempotency; signals use their UID.
	ID string
}

// Options configure a Scheduler.
type Options struct {
	// Module is the module this scheduler runs nodes for. Required.
	Module module.Info
	// Components are the components nodes may name. Defaults to module.Registered().
	Components []module.Component
	// Leader gives this replica's leadership term. Defaults to leader.Never.
	Leader leader.Source
	// Status persists node status; nil drops status writes.
	Status StatusWriter
	// Lookup finds nodes outside this module; nil finds none.
	Lookup Lookup
	// Transport carries messages to other modules; nil fails them.
	Transport Transport
	// Metrics registers the scheduler's metrics; nil registers none.
	Metrics prometheus.Registerer
	// Tracing, if set, makes a span of every delivery to a business port
	// (its node, port, edge and result), the child of the sender's. Nil:
	// no spans, at no cost.
	Tracing trace.TracerProvider
	// Log receives panics and delivery failures. Defaults to discarding.
	Log logr.Logger
	// OnPanic, if set, learns of every panic recovered from a node's
	// component code, with the entry point it came from ("Handle on port in",
	// "Ports", ...): the place to make it the node's status.error and an Event.
	OnPanic func(node string, err error)
	// LogEvery bounds the log lines of failed deliveries: at most one per
	// node and edge (or port) in each period, with a count of those left out.
	// Defaults to 10 seconds.
	LogEvery time.Duration
	// MaxDepth bounds the hops of one message. Defaults to DefaultMaxDepth.
	MaxDepth int
	// Resources returns the resource manager of a node, delivered on the
	// _client port to components that declare it; nil delivers none.
	Resources func(node string) module.ResourceManager
}

// Scheduler holds the instances of a module's nodes.
type Scheduler struct {
	opts       Options
	components map[string]module.Component
	clients    map[string]bool          // components that declare _client
	protoPorts map[string][]module.Port // each component's ports, as registered
	metrics    *metrics
	failures   *failures
	tracer     trace.Tracer // nil: no spans

	mu        sync.RWMutex
	instances map[string]*instance
	// instancesSeq changes with instances (under mu), so that an edge may
	// keep the instance it found while the map stays as it was.
	instancesSeq atomic.Uint64
}

// New returns a Scheduler; it panics on a component registered twice.
func New(opts Options) (*Scheduler, error) {
	if opts.Module.Name == "" {
		return nil, errors.New("scheduler: module name is required")
	}
	if opts.Components == nil {
		opts.Components = module.Registered()
	}
	go clock.Now() // the clock's first read takes 2 ms: not a message's
	if opts.Leader == nil {
		opts.Leader = leader.Never
	}
	if opts.Lookup == nil {
		opts.Lookup = func(string) (*v1alpha1.TinyNode, bool) { return nil, false }
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	if opts.MaxDepth == 0 {
		opts.MaxDepth = DefaultMaxDepth
	}
	if opts.LogEvery == 0 {
		opts.LogEvery = 10 * time.Second
	}
	s := &Scheduler{
		opts:       opts,
		components: make(map[string]module.Component, len(opts.Components)),
		clients:    map[string]bool{},
		protoPorts: map[string][]module.Port{},
		instances:  map[string]*instance{},
	}
	s.failures = newFailures(opts.LogEvery)
	if opts.Tracing != nil {
		s.tracer = opts.Tracing.Tracer("github.com/tinymod/tinymod/internal/scheduler")
	}
	for _, c := range opts.Components {
		var name string
		if err := contain(func() { name = c.GetInfo().Name }); err != nil {
			return nil, fmt.Errorf("scheduler: a component's GetInfo: %w", err)
		}
		if _, dup := s.components[name]; dup {
			return nil, fmt.Errorf("scheduler: component %q given twice", name)
		}
		s.components[name] = c
		var ports []module.Port
		if err := contain(func() { ports = c.Ports() }); err != nil {
			opts.Log.Error(err, "component's Ports panicked", "component", name)
		}
		s.protoPorts[name] = ports
		for _, p := range ports {
			if p.Name == v1alpha1.ClientPort {
				s.clients[name] = true
			}
		}
	}
	m, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}

// UsesClient reports whether the named component declares the _client port:
// its nodes may own cluster resources.
func (s *Scheduler) UsesClient(component string) bool { return s.clients[component] }

// Module returns the module the scheduler runs nodes for.
func (s *Scheduler) Module() module.Info { return s.opts.Module }

// Components returns the components the scheduler can run, sorted by name.
func (s *Scheduler) Components() []module.Component {
	out := make([]module.Component, 0, len(s.components))
	for _, name := range s.componentNames() {
		out = append(out, s.components[name])
	}
	return out
}

// target returns the instance e leads to, as instance(e.toNode) does; the
// edge keeps it until the instances change.
func (s *Scheduler) target(e *edge) *instance {
	seq := s.instancesSeq.Load() // before the lookup: a change after it shows
	if t := e.target.Load(); t != nil && t.seq == seq {
		return t.inst
	}
	inst := s.instance(e.toNode)
	e.target.Store(&edgeTarget{inst: inst, seq: seq})
	return inst
}

func (s *Scheduler) instance(name string) *instance {
	s.mu.RLock()
	inst := s.instances[name]
	s.mu.RUnlock()
	return inst
}

// Problem is bad input that keeps a node from running as its spec says.
type Problem struct {
	// Reason is a CamelCase word for conditions and Events.
	Reason string
	// Message says what is wrong, naming the part of the spec.
	Message string
}

// Problem reasons.
const (
	ReasonUnknownComponent = "UnknownComponent"
	ReasonInvalidSettings  = "InvalidSettings"
	ReasonSettingsRejected = "SettingsRejected"
	ReasonInvalidEdge      = "InvalidEdge"
	ReasonInvalidMapping   = "InvalidMapping"
	ReasonComponentPanic   = "ComponentPanic"
)

// Update makes the node's instance match node: it creates the instance if
// needed (replacing it when the component changed), delivers settings when they
// changed and then the node on _reconcile. Problems with the spec are returned
// and leave the rest of the node, and every other node, running. The scheduler
// keeps node until the next Update and never changes it, so it may be an
// informer cache's own object.
func (s *Scheduler) Update(ctx context.Context, node *v1alpha1.TinyNode) []Problem {
	if node.Spec.Module != s.opts.Module.Name {
		s.Remove(node.Name)
		return nil
	}
	component, ok := s.components[node.Spec.Component]
	if !ok {
		s.Remove(node.Name)
		return []Problem{{Reason: ReasonUnknownComponent, Message: fmt.Sprintf(
			"spec.component: module %s has no component %q (it has %s)",
			s.opts.Module.Name, node.Spec.Component, strings.Join(s.componentNames(), ", "))}}
	}

	inst, problem := s.instanceFor(node.Name, node.Spec.Component, component)
	if problem != nil {
		return []Problem{*problem}
	}
	problems := inst.update(ctx, node)
	s.countInstances()
	return problems
}

// instanceFor returns the node's instance of component, making one if there
// is none (or one of another component). Component code (Instance, Ports,
// Destroy) runs outside the scheduler's lock, so a component that blocks holds
// up only its own node; an instance made meanwhile by another caller (a
// message along an edge to a node not reconciled yet) wins, and the spare is
// destroyed, so none is left running unseen.
func (s *Scheduler) instanceFor(name, componentName string, component module.Component) (*instance, *Problem) {
	for {
		s.mu.Lock()
		inst := s.instances[name]
		if inst != nil && inst.componentName == componentName {
			s.mu.Unlock()
			return inst, nil
		}
		if inst != nil {
			delete(s.instances, name)
			s.instancesSeq.Add(1)
		}
		s.mu.Unlock()
		if inst != nil {
			inst.deleted() // the node is gone for that component
			inst.destroy()
		}

		var c module.Component
		if err := contain(func() { c = component.Instance() }); err != nil || c == nil {
			if err == nil {
				err = errors.New("Instance returned nil")
			}
			s.panicked(name, "Instance", err)
			return nil, &Problem{Reason: ReasonComponentPanic, Message: fmt.Sprintf("component %s cannot make an instance: %v", componentName, err)}
		}
		fresh := s.newInstance(name, componentName, c)

		s.mu.Lock()
		if s.instances[name] == nil {
			s.instances[name] = fresh
			s.instancesSeq.Add(1)
			s.mu.Unlock()
			return fresh, nil
		}
		s.mu.Unlock()
		fresh.discard() // another caller got there first: use (or replace) theirs
	}
}

func (s *Scheduler) countInstances() {
	s.mu.RLock()
	n := len(s.instances)
	s.mu.RUnlock()
	s.metrics.instances.WithLabelValues(s.opts.Module.Name).Set(float64(n))
}

// Remove destroys the node's instance, if there is one: the node was
// deleted or left the module. A component that implements NodeDeleter learns
// it first (Stop, a replica's shutdown, does not tell it).
func (s *Scheduler) Remove(name string) {
	s.mu.Lock()
	inst := s.instances[name]
	delete(s.instances, name)
	s.instancesSeq.Add(1)
	s.mu.Unlock()
	if inst != nil {
		inst.deleted()
		inst.destroy()
	}
	s.countInstances()
}

// Stop destroys every instance.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	all := s.instances
	s.instances = map[string]*instance{}
	s.instancesSeq.Add(1)
	s.mu.Unlock()
	for _, inst := range all {
		inst.destroy()
	}
	s.countInstances()
}

// Has reports whether the node has a running instance.
func (s *Scheduler) Has(name string) bool { return s.instance(name) != nil }

// Handle delivers an external message (a signal, a message from another
// module) to "<node>.<port>" of this module and returns the node's result.
// A failure is counted and logged here, on the replica where it happened.
func (s *Scheduler) Handle(ctx context.Context, msg Msg) any {
	nodeName, port, err := SplitTarget(msg.To)
	if err != nil {
		return module.Permanent(err)
	}
	if port == MetadataPort {
		return s.applyForwarded(ctx, nodeName, msg)
	}
	inst := s.instance(nodeName)
	if inst == nil {
		// Not kept per node (the name comes from outside and may be
		// anything): counted, and logged under one key.
		err := module.Permanent(fmt.Errorf("%w: %s in module %s", ErrNoNode, nodeName, s.opts.Module.Name))
		s.failedUnknown(err)
		return err
	}
	if msg.ID != "" {
		ctx = module.WithMessageID(ctx, msg.ID)
	}
	d := depth(ctx)
	if d < 0 || d > s.opts.MaxDepth {
		err := module.Permanent(fmt.Errorf("%s: %w: %d hops", msg.To, ErrDepth, d))
		s.failed(nodeName, "port "+port, msg.From, err)
		return err
	}
	return inst.receive(ctx, d, nil, "", msg.From, port, msg.Data)
}

// LeadershipChanged delivers _reconcile to every instance, each in its own
// goroutine, so components see the transition (the seed's wasLeader pattern).
func (s *Scheduler) LeadershipChanged() {
	s.mu.RLock()
	all := make([]*instance, 0, len(s.instances))
	for _, inst := range s.instances {
		all = append(all, inst)
	}
	s.mu.RUnlock()
	for _, inst := range all {
		go func() {
			// In turn with updates, and with the node as it is then: a copy
			// read before an update delivered a newer one would take the
			// component back in time.
			inst.updateMu.Lock()
			inst.mu.RLock()
			node := inst.node
			inst.mu.RUnlock()
			if node != nil && inst.ctx.Err() == nil {
				inst.deliverSystem(v1alpha1.ReconcilePort, node.DeepCopy())
			}
			inst.updateMu.Unlock()
			if node != nil {
				inst.refreshSoon() // the ports may follow what the component did
			}
		}()
	}
}

// ErrNoNode is the error for a message to a node that does not run here.
var ErrNoNode = errors.New("no such node")

// ErrNoPort is the error for a message to a port the node does not have.
var ErrNoPort = errors.New("no such port")

// ErrDepth is the error for a message that took too many hops, usually a cycle.
var ErrDepth = errors.New("message depth limit reached (a cycle in the flow?)")

// SplitTarget splits "<node>.<port>" at its last dot.
func SplitTarget(to string) (node, port string, err error) {
	i := strings.LastIndexByte(to, '.')
	if i <= 0 || i == len(to)-1 {
		return "", "", fmt.Errorf("target %q is not <node>.<port>", to)
	}
	return to[:i], to[i+1:], nil
}

func (s *Scheduler) componentNames() []string {
	names := make([]string, 0, len(s.components))
	for name := range s.components {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

type depthKey struct{}

// depth returns how many hops the message carried by ctx has taken.
func depth(ctx context.Context) int {
	d, _ := ctx.Value(depthKey{}).(int)
	return d
}

// msgContext is the context a business message is handled with: its
// sender's, plus the hops it has taken and the receiving node's values
// (this replica's leadership for utils.IsLeader, and the node's logger for
// module.Log), in one layer, so a hop costs one allocation rather than one
// per value. It ends when the message is answered (module's doc promises
// it); the cancelCtx that makes Done is made only when someone asks for it,
// since most handlers never do.
//
// It takes 48 bytes, the allocation a hop cannot avoid: the answer's error
// is one of the two a context may have, kept as a number.
type msgContext struct {
	parent context.Context
	node   context.Context              // the node's values, over a context that has none
	ended  atomic.Pointer[endedContext] // made the first time Done is asked for
	depth  int32
	state  atomic.Int32 // live, or answered with which Err
}

// msgContext states.
const (
	live int32 = iota
	answeredCanceled
	answeredDeadline
)

type endedContext struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newMsgContext(parent, node context.Context, depth int) *msgContext {
	return &msgContext{parent: parent, node: node, depth: int32(depth)}
}

func (c *msgContext) Deadline() (time.Time, bool) { return c.parent.Deadline() }

func (c *msgContext) Done() <-chan struct{} {
	if e := c.ended.Load(); e != nil {
		return e.ctx.Done()
	}
	e := &endedContext{}
	e.ctx, e.cancel = context.WithCancel(c.parent)
	if !c.ended.CompareAndSwap(nil, e) {
		e.cancel() // another Done made one first
		e = c.ended.Load()
	}
	// After the swap: answer either sees e or is seen here.
	if c.state.Load() != live {
		e.cancel()
	}
	return e.ctx.Done()
}

func (c *msgContext) Err() error {
	switch c.state.Load() {
	case answeredCanceled:
		return context.Canceled
	case answeredDeadline:
		return context.DeadlineExceeded
	}
	if e := c.ended.Load(); e != nil {
		return e.ctx.Err()
	}
	return c.parent.Err()
}

func (c *msgContext) Value(key any) any {
	if _, ok := key.(depthKey); ok {
		return int(c.depth)
	}
	if v := c.node.Value(key); v != nil {
		return v
	}
	if e := c.ended.Load(); e != nil {
		return e.ctx.Value(key) // context.Cause and children find its cancelCtx
	}
	return c.parent.Value(key)
}

func (c *msgContext) String() string { return "scheduler.msgContext" }

// answer ends the context: the message has been answered. It is called
// once, by the goroutine that handled the message.
func (c *msgContext) answer() {
	var err error
	if e := c.ended.Load(); e != nil {
		e.cancel()
		err = e.ctx.Err()
	} else {
		err = c.parent.Err()
	}
	if err == context.DeadlineExceeded {
		c.state.Store(answeredDeadline)
	} else {
		c.state.Store(answeredCanceled)
	}
	// A Done made meanwhile either saw answered or is seen here.
	if e := c.ended.Load(); e != nil {
		e.cancel()
	}
}

// WithDepth returns ctx for a message that has taken d hops, so a message that
// arrives from another module keeps counting.
func WithDepth(ctx context.Context, d int) context.Context {
	return context.WithValue(ctx, depthKey{}, d)
}

// Depth returns the hops taken by the message ctx carries.
func Depth(ctx context.Context) int { return depth(ctx) }
