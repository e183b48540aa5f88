package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel/trace"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/clock"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/mapping"
	"github.com/tinymod/tinymod/internal/schema"
	"github.com/tinymod/tinymod/module"
)

// instance is one node's component instance with its wiring.
type instance struct {
	s             *Scheduler
	name          string
	componentName string
	action        string // "node <name>": leader-only work in the journal
	component     module.Component
	contract      Contract
	output        module.Handler

	// ctx lives as long as the instance; system ports are delivered with it.
	ctx    context.Context
	cancel context.CancelFunc
	// values carries what every Handle's context asks of the node (this
	// replica's leadership, the node's logger) and nothing else: a business
	// message's context looks them up here (see msgContext).
	values context.Context

	// termCtx is ctx also ended by the leadership term it was made in; one
	// per term, so that system deliveries do not each hang a new child on ctx.
	termMu  sync.Mutex
	termCtx *termContext

	// refresh re-reads the component's ports off the caller's goroutine
	// (see refreshSoon).
	refreshMu      sync.Mutex
	refreshRunning bool
	refreshPending bool
	// portsWanted counts the refreshes asked for and portsRead those done;
	// refreshed is closed and replaced when one is done (see awaitPorts).
	portsWanted, portsRead atomic.Uint64
	portsSeq               atomic.Uint64 // reads of the ports begun
	refreshed              chan struct{} // under refreshMu

	// started is closed once the first update has delivered the node's
	// settings and _reconcile; messages wait for it (see awaitStart).
	started   chan struct{}
	startOnce sync.Once
	isStarted atomic.Bool // set before started is closed: no lock to read

	// updateMu serialises update so settings are delivered in order.
	updateMu sync.Mutex
	settings []byte // canonical JSON of the settings last delivered
	client   bool   // the resource manager has been delivered on _client

	mu          sync.RWMutex
	ports       map[string]*port // the component's ports by name
	portsStored uint64           // the portsSeq of the read that made ports
	info        module.ComponentInfo
	statuses    []v1alpha1.PortStatus // the ports as published, in the component's order
	edges       map[string][]*edge    // output port -> its edges, in spec order
	mappings    map[mappingKey]*compiledMapping
	node        *v1alpha1.TinyNode
	// wiring is ports, edges and mappings as last written (under mu), for
	// send and receive to read without the lock.
	wiring atomic.Pointer[wiring]
}

type wiring struct {
	ports map[string]*port
	// edges are those of output ports the component has now: a port that
	// has edges needs no look-up of its own to be sent on.
	edges    map[string][]*edge
	mappings map[mappingKey]*compiledMapping
}

// publishLocked makes ports, edges and mappings as they are now what send
// and receive read. The caller holds mu.
func (inst *instance) publishLocked() {
	edges := inst.edges
	for name := range inst.edges {
		if p := inst.ports[name]; p == nil || !p.def.Source {
			// The port went after the edges were made (the component's
			// ports changed): a send there fails until it comes back.
			edges = make(map[string][]*edge, len(inst.edges))
			for name, es := range inst.edges {
				if p := inst.ports[name]; p != nil && p.def.Source {
					edges[name] = es
				}
			}
			break
		}
	}
	inst.wiring.Store(&wiring{ports: inst.ports, edges: edges, mappings: inst.mappings})
}

// lookUp returns the port a message goes to and the mapping on its way
// there. An edge it comes along keeps what it found for as long as w is
// the target's wiring, which saves the look-ups by name.
func (w *wiring) lookUp(via *edge, from, portName string) (*port, *compiledMapping) {
	if via != nil {
		if c := via.found.Load(); c != nil && c.w == w {
			return c.p, c.m
		}
	}
	p := w.ports[portName]
	var m *compiledMapping
	if from != "" && len(w.mappings) > 0 {
		m = w.mappings[mappingKey{from: from, port: portName}]
	}
	if via != nil {
		via.found.Store(&edgeFound{w: w, p: p, m: m})
	}
	return p, m
}

// edgeFound is what an edge led to in its target's wiring w.
type edgeFound struct {
	w *wiring
	p *port
	m *compiledMapping
}

type mappingKey struct{ from, port string }

type compiledMapping struct {
	tpl *mapping.Template
	err error // why it did not compile; messages along the edge fail with it
}

type edge struct {
	// attempts and backoff are the edge's retry policy; attempts <= 1 sends once.
	attempts int
	backoff  time.Duration
	id       string
	from     string // "<this node>.<port>"
	to       string
	toNode   string
	toPort   string
	target   atomic.Pointer[edgeTarget] // see Scheduler.target
	found    atomic.Pointer[edgeFound]  // see wiring.lookUp
	// remote is the other module the target node was found in. Edges are
	// made again whenever their node is reconciled, which the target
	// node's creation, deletion or change of spec causes, so it never
	// outlives what it was learnt from.
	remote atomic.Pointer[string]
}

// edgeTarget is the instance an edge led to while the scheduler's instances
// were at seq.
type edgeTarget struct {
	inst *instance
	seq  uint64
}

func (s *Scheduler) newInstance(name, componentName string, c module.Component) *instance {
	// The node's logger is made when something logs: most nodes never do,
	// and one costs most of a kilobyte.
	base := s.opts.Log
	values := module.WithLogFunc(leader.NewContext(context.Background(), s.opts.Leader, "node "+name),
		func() logr.Logger { return base.WithValues("node", name) })
	ctx, cancel := context.WithCancel(values)
	inst := &instance{
		s: s, name: name, componentName: componentName, component: c, action: "node " + name,
		ctx: ctx, cancel: cancel, values: values, contract: contractOf(c),
		started:   make(chan struct{}),
		refreshed: make(chan struct{}),
		edges:     map[string][]*edge{},
		mappings:  map[mappingKey]*compiledMapping{},
	}
	inst.output = inst.send
	inst.refreshPorts()
	return inst
}

func (inst *instance) destroy() {
	inst.discard()
	inst.s.metrics.forget(inst.name)
	inst.s.failures.forget(inst.name)
}

// discard ends the instance and its component, leaving the node's metrics and
// health, which another instance of the node may be using.
func (inst *instance) discard() {
	inst.cancel()
	inst.markStarted() // nobody waits on an instance that is gone
	inst.termMu.Lock()
	if inst.termCtx != nil {
		inst.termCtx.unhook() // a long term must not keep hooks of destroyed instances
	}
	inst.termMu.Unlock()
	if d, ok := inst.component.(module.Destroyer); ok {
		if err := contain(d.Destroy); err != nil {
			inst.s.panicked(inst.name, "Destroy", err)
		}
	}
}

// update applies a new version of the node's spec.
func (inst *instance) update(ctx context.Context, node *v1alpha1.TinyNode) []Problem {
	inst.updateMu.Lock()
	defer inst.updateMu.Unlock()

	// A stale copy (a message's Lookup racing the controller) never rolls
	// the instance back to an older spec.
	inst.mu.RLock()
	prev := inst.node
	inst.mu.RUnlock()
	if prev != nil && prev.UID == node.UID && node.Generation < prev.Generation {
		return nil
	}
	// What the component sends while it takes its first settings and
	// _reconcile may come back to it along a cycle: that must not wait for
	// the start it is part of, nor for the start of a node whose message
	// made this one (ctx's chain).
	sys := inst.systemContext()
	if prev == nil {
		sys = context.WithValue(sys, startingKey{}, &startChain{inst: inst, next: startingIn(ctx)})
		defer inst.markStarted()
	}

	// Wire first, so a component that acts on its settings (sending on an
	// output) finds its edges; then deliver the settings; if they changed the
	// ports (a router's routes), wire again against the new ones.
	mappings, mappingProblems := compileMappings(node)
	edgeProblems := inst.wire(node, mappings)
	// A component that declares _client gets its resource manager once,
	// before its first settings.
	if !inst.client && inst.s.opts.Resources != nil && inst.portLocked(v1alpha1.ClientPort) != nil {
		inst.client = true
		inst.handle(sys, inst.portLocked(v1alpha1.ClientPort), "", v1alpha1.ClientPort, inst.s.opts.Resources(inst.name))
	}
	var settingsRaw []byte
	for _, pc := range node.Spec.Ports {
		if pc.From == "" && pc.Port == v1alpha1.SettingsPort && pc.Configuration != nil {
			settingsRaw = pc.Configuration.Raw
		}
	}
	reconcile := func() {
		if res := inst.handle(sys, inst.portLocked(v1alpha1.ReconcilePort), "", v1alpha1.ReconcilePort, node.DeepCopy()); res != nil {
			if err, ok := res.(error); ok {
				inst.s.opts.Log.Error(err, "reconcile failed", "node", inst.name)
			}
		}
	}
	if inst.contract.ReconcileFirst {
		reconcile()
	}
	settingsProblem, changed := inst.settingsLocked(sys, settingsRaw)
	if changed {
		inst.refreshPorts()
		edgeProblems = inst.wire(node, mappings)
	}

	if !inst.contract.ReconcileFirst {
		reconcile()
	}
	// The ports may follow the state _reconcile restored, too (a control
	// port that shows a stop button while running): read them, and wire,
	// again.
	inst.refreshPorts()
	edgeProblems = inst.wire(node, mappings)

	problems := append(edgeProblems, mappingProblems...)
	if settingsProblem != nil {
		problems = append(problems, *settingsProblem)
	}
	return problems
}

// wire installs the node's edges that point at existing ports, with the
// mappings, and returns what is wrong with the others.
func (inst *instance) wire(node *v1alpha1.TinyNode, mappings map[mappingKey]*compiledMapping) []Problem {
	var problems []Problem
	edges := map[string][]*edge{}
	for i, e := range node.Spec.Edges {
		toNode, toPort, err := SplitTarget(e.To)
		if err == nil {
			err = inst.s.checkTarget(toNode, toPort)
		}
		if err == nil {
			if p := inst.portLocked(e.Port); p == nil || !p.def.Source {
				err = fmt.Errorf("%s has no output port %q", node.Spec.Component, e.Port)
			}
		}
		wired := &edge{id: e.ID, from: node.Name + "." + e.Port, to: e.To, toNode: toNode, toPort: toPort}
		if err == nil && e.Retry != nil {
			wired.attempts, wired.backoff = int(e.Retry.Attempts), 100*time.Millisecond
			if e.Retry.Backoff != "" {
				if wired.backoff, err = time.ParseDuration(e.Retry.Backoff); err != nil {
					err = fmt.Errorf("retry.backoff: %w", err)
				}
			}
		}
		if err != nil {
			problems = append(problems, Problem{Reason: ReasonInvalidEdge, Message: fmt.Sprintf("spec.edges[%d] (%s): %v", i, e.ID, err)})
			continue
		}
		edges[e.Port] = append(edges[e.Port], wired)
	}
	inst.mu.Lock()
	inst.edges = edges
	inst.mappings = mappings
	inst.publishLocked()
	inst.node = node
	inst.mu.Unlock()
	return problems
}

// compileMappings compiles the node's per-edge mappings.
func compileMappings(node *v1alpha1.TinyNode) (map[mappingKey]*compiledMapping, []Problem) {
	var problems []Problem
	mappings := map[mappingKey]*compiledMapping{}
	for i, pc := range node.Spec.Ports {
		if pc.From == "" || pc.Configuration == nil {
			continue
		}
		tpl, err := mapping.Compile(pc.Configuration.Raw)
		if err != nil {
			problems = append(problems, Problem{Reason: ReasonInvalidMapping, Message: fmt.Sprintf("spec.ports[%d] (%s from %s): %v", i, pc.Port, pc.From, err)})
		}
		mappings[mappingKey{from: pc.From, port: pc.Port}] = &compiledMapping{tpl: tpl, err: err}
	}
	return mappings, problems
}

// settingsLocked decodes and validates the settings and delivers them if they
// changed, reporting whether it delivered. The caller holds updateMu.
func (inst *instance) settingsLocked(sys context.Context, raw []byte) (*Problem, bool) {
	p := inst.portLocked(v1alpha1.SettingsPort)
	if p == nil {
		return nil, false // the component takes no settings
	}
	if len(raw) > 0 && !inst.contract.UnvalidatedSettings {
		if err := p.validate(raw); err != nil {
			return &Problem{Reason: ReasonInvalidSettings, Message: fmt.Sprintf("settings break the schema of %s: %v", v1alpha1.SettingsPort, err)}, false
		}
	}
	var (
		value any
		err   error
	)
	if perr := contain(func() { value, err = p.decodeJSON(raw) }); perr != nil {
		inst.s.panicked(inst.name, "decoding settings", perr)
		err = perr
	}
	if err != nil {
		return &Problem{Reason: ReasonInvalidSettings, Message: fmt.Sprintf("settings do not decode into %s: %v", p.typ, err)}, false
	}
	canonical, err := json.Marshal(value)
	if err != nil {
		return &Problem{Reason: ReasonInvalidSettings, Message: err.Error()}, false
	}
	if inst.settings != nil && bytes.Equal(canonical, inst.settings) {
		return nil, false
	}
	if res := inst.handle(sys, p, "", v1alpha1.SettingsPort, value); res != nil {
		if err, ok := res.(error); ok {
			return &Problem{Reason: ReasonSettingsRejected, Message: fmt.Sprintf("the component rejected its settings: %v", err)}, false
		}
	}
	inst.settings = canonical
	return nil, true
}

// refreshPorts re-reads the component's ports, which may follow its settings
// or its state, and what it publishes of them. Port values are never changed
// once published (readers hold them without the lock): the table is replaced
// whole. A component whose Ports or GetInfo panics keeps its last table.
func (inst *instance) refreshPorts() {
	// Reads may overlap (an update's and refreshSoon's): the table of the
	// read that began last wins, whichever ends last.
	seq := inst.portsSeq.Add(1)
	var (
		defs []module.Port
		info module.ComponentInfo
	)
	if err := contain(func() { defs = inst.component.Ports(); info = inst.component.GetInfo() }); err != nil {
		inst.s.panicked(inst.name, "Ports", err)
		inst.mu.Lock()
		if inst.ports == nil {
			inst.ports = inst.s.portsOf(inst.name, nil, false)
			inst.publishLocked()
		}
		inst.mu.Unlock()
		return
	}
	fresh := inst.s.portsOf(inst.name, defs, inst.contract.DecodeOverZero)
	statuses := PortStatuses(defs)
	inst.mu.Lock()
	if seq > inst.portsStored {
		inst.ports, inst.info, inst.statuses, inst.portsStored = fresh, info, statuses, seq
		inst.publishLocked()
	}
	inst.mu.Unlock()
}

// refreshSoon re-reads the ports on a goroutine of its own, then asks for the
// status to be written: a component may call output on _control or
// _reconcile while holding a lock that its Ports takes, so the caller must
// not wait for it. Requests that arrive meanwhile are served by one more pass.
// Messages that arrive before the pass ends wait for it (see awaitPorts).
func (inst *instance) refreshSoon() {
	inst.refreshMu.Lock()
	inst.portsWanted.Add(1)
	if inst.refreshRunning {
		inst.refreshPending = true
		inst.refreshMu.Unlock()
		return
	}
	inst.refreshRunning = true
	inst.refreshMu.Unlock()
	go func() {
		for {
			target := inst.portsWanted.Load()
			inst.refreshPorts()
			if inst.s.opts.Status != nil && inst.s.opts.Leader.Current().Confirm(inst.action) {
				inst.s.opts.Status.Refresh(inst.name)
			}
			inst.refreshMu.Lock()
			inst.portsRead.Store(target)
			close(inst.refreshed)
			inst.refreshed = make(chan struct{})
			if !inst.refreshPending || inst.ctx.Err() != nil {
				inst.refreshRunning, inst.refreshPending = false, false
				inst.refreshMu.Unlock()
				return
			}
			inst.refreshPending = false
			inst.refreshMu.Unlock()
		}
	}()
}

// PortsWait bounds how long a message waits for its node's ports to be read
// again after the component sent on _control or _reconcile (a component
// whose Ports blocks, or takes a lock the sender holds, must not hold the
// message for ever). Past it, the message is decoded with the ports as they
// were.
const PortsWait = time.Second

// awaitPorts waits until the ports asked for before the call have been read
// again, so that a message is decoded into the type the component declares
// now: a signal's control after it started sending, say.
func (inst *instance) awaitPorts(ctx context.Context) {
	if target := inst.portsWanted.Load(); inst.portsRead.Load() < target {
		inst.awaitPortsRead(ctx, target)
	}
}

// awaitPortsRead is awaitPorts' wait, apart so that the usual case, nothing
// to wait for, runs no deferred call.
func (inst *instance) awaitPortsRead(ctx context.Context, target uint64) {
	var timeout <-chan time.Time
	for {
		inst.refreshMu.Lock()
		ch := inst.refreshed
		inst.refreshMu.Unlock()
		if inst.portsRead.Load() >= target {
			return
		}
		if timeout == nil {
			t := time.NewTimer(PortsWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-timeout:
			return
		}
	}
}

// deliverSystem hands a system-port message to the component with a context
// that lives as long as the instance and, on the leader, ends with the term.
func (inst *instance) deliverSystem(port string, msg any) any {
	return inst.handle(inst.systemContext(), inst.portLocked(port), "", port, msg)
}

// systemContext is the context for system ports: the instance's own, also
// cancelled when the current leadership term ends.
func (inst *instance) systemContext() context.Context {
	term := inst.s.opts.Leader.Current()
	if term == nil {
		return inst.ctx
	}
	inst.termMu.Lock()
	defer inst.termMu.Unlock()
	if inst.termCtx == nil || inst.termCtx.term != term {
		if inst.termCtx != nil {
			inst.termCtx.unhook() // the last term's hook goes with it
		}
		inst.termCtx = &termContext{Context: inst.ctx, term: term}
	}
	return inst.termCtx
}

// termContext is an instance's context also ended by a leadership term. The
// context that merges the two, with its hook on the term, is made the first
// time Done is asked for: most components never ask, and on a leader with
// thousands of nodes a hook each costs most of a kilobyte a node.
type termContext struct {
	context.Context // the instance's: values, and its own end
	term            *leader.Term

	mu     sync.Mutex
	merged atomic.Pointer[mergedContext]
	gone   bool // unhooked: Done makes no new hook
}

type mergedContext struct {
	ctx  context.Context
	stop func() bool // unhooks ctx from the term's context
}

func (c *termContext) Done() <-chan struct{} {
	if m := c.merged.Load(); m != nil {
		return m.ctx.Done()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.merged.Load(); m != nil {
		return m.ctx.Done()
	}
	ctx, cancel := context.WithCancel(c.Context)
	m := &mergedContext{ctx: ctx, stop: func() bool { return false }}
	if c.gone {
		cancel() // the instance or its term is over: so is this
	} else {
		m.stop = context.AfterFunc(c.term.Context(), cancel)
	}
	c.merged.Store(m)
	return ctx.Done()
}

func (c *termContext) Err() error {
	if m := c.merged.Load(); m != nil {
		return m.ctx.Err()
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if c.term.Context().Err() == nil {
		return nil
	}
	<-c.Done() // the term is over: merged now, so that context.Cause agrees
	return c.merged.Load().ctx.Err()
}

// Value finds the merged context's cancelCtx once there is one, so that
// contexts derived from this one hang on it rather than start a goroutine.
func (c *termContext) Value(key any) any {
	if m := c.merged.Load(); m != nil {
		return m.ctx.Value(key)
	}
	return c.Context.Value(key)
}

// unhook removes the hook on the term, if one was made.
func (c *termContext) unhook() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gone = true
	if m := c.merged.Load(); m != nil {
		m.stop()
	}
}

func (inst *instance) portLocked(name string) *port {
	inst.mu.RLock()
	defer inst.mu.RUnlock()
	return inst.ports[name]
}

// StartWait bounds how long a message waits for its node's first settings and
// _reconcile to be delivered (a component that blocks in them, or a message
// that comes back along a cycle through another module, must not hold the
// message for ever). Past it, the message is delivered anyway.
const StartWait = 5 * time.Second

// startingKey marks the context of an instance's first update with the
// instances starting in it, so that what the component sends from it and
// comes back to one of them does not wait for it.
type startingKey struct{}

type startChain struct {
	inst *instance
	next *startChain
}

func startingIn(ctx context.Context) *startChain {
	c, _ := ctx.Value(startingKey{}).(*startChain)
	return c
}

func (inst *instance) markStarted() {
	inst.startOnce.Do(func() { inst.isStarted.Store(true); close(inst.started) })
}

// awaitStart holds a message until the node has had its first settings and
// _reconcile: a node made by a message along an edge, or racing its first
// reconcile, sees its own spec before any message. It returns ctx's error if
// the message's context ends first.
func (inst *instance) awaitStart(ctx context.Context) error {
	if inst.isStarted.Load() {
		return nil
	}
	select {
	case <-inst.started:
		return nil
	default:
	}
	for c := startingIn(ctx); c != nil; c = c.next {
		if c.inst == inst {
			return nil
		}
	}
	t := time.NewTimer(StartWait)
	defer t.Stop()
	select {
	case <-inst.started:
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		module.Log(inst.values).Info("delivering a message before the node's first settings and _reconcile ended", "waited", StartWait)
	}
	return nil
}

// receive decodes a message arriving at one of this node's ports (through the
// mapping of the edge it came along, if there is one) and handles it. The
// message has taken hops hops; via is the edge of this module it came along,
// if any, which keeps the port and mapping it leads to.
func (inst *instance) receive(ctx context.Context, hops int, via *edge, edge, from, portName string, data any) (result any) {
	// Its ports, too, may follow its first settings (a router's routes).
	if !isSystemPort(portName) {
		if err := inst.awaitStart(ctx); err != nil {
			err = fmt.Errorf("message for %s.%s: waiting for the node to start: %w", inst.name, portName, err)
			inst.s.failed(inst.name, edgeOrPort(from, portName), from, err)
			return err
		}
	}
	inst.awaitPorts(ctx)
	if inst.ctx.Err() != nil {
		// The instance went while the message waited (its node deleted, its
		// component changed): the message goes to the one that replaced
		// it, if any, never to a destroyed component.
		if next := inst.s.instance(inst.name); next != nil && next != inst && next.ctx.Err() == nil {
			return next.receive(ctx, hops, via, edge, from, portName, data)
		}
		err := module.Permanent(fmt.Errorf("%w: %s went while the message waited", ErrNoNode, inst.name))
		inst.s.failed(inst.name, edgeOrPort(from, portName), from, err)
		return err
	}
	if t := inst.s.tracer; t != nil && traced(portName) {
		var span trace.Span
		ctx, span = inst.startSpan(ctx, t, edge, from, portName)
		defer func() { endSpan(span, result) }()
	}
	p, m := inst.wiring.Load().lookUp(via, from, portName)
	var err error
	switch {
	case p == nil:
		err = module.Permanent(fmt.Errorf("%w: node %s has no port %q", ErrNoPort, inst.name, portName))
	case p.def.Source:
		err = module.Permanent(fmt.Errorf("%w: %s.%s is an output port", ErrNoPort, inst.name, portName))
	}
	if err != nil {
		inst.s.failed(inst.name, edgeOrPort(from, portName), from, err)
		return err
	}
	var msg any
	if m == nil && p.passes(data) {
		msg = data // no component code can run: nothing to contain
	} else if perr := contain(func() { msg, err = inst.decode(p, m, data) }); perr != nil {
		inst.s.panicked(inst.name, "decoding a message for port "+portName, perr)
		err = perr
	}
	if err != nil {
		err = module.Permanent(fmt.Errorf("message for %s.%s: %w", inst.name, portName, err))
		p.m.failed.Inc()
		inst.s.failed(inst.name, edgeOrPort(from, portName), from, err)
		return err
	}
	if isSystemPort(portName) {
		// System ports carry the instance's context: it lives as long as the
		// node (and the term), not as long as the message.
		return inst.handle(withMessageID(inst.systemContext(), ctx), p, from, portName, msg)
	}
	// Whoever delivered the message (an edge, a signal, another module), the
	// component asks utils.IsLeader of this replica's leadership, and logs
	// as this node; the context ends when the message is answered.
	mctx := newMsgContext(ctx, inst.values, hops)
	defer mctx.answer()
	return inst.handle(mctx, p, from, portName, msg)
}

// edgeOrPort names where a message came in, for failure logs: the edge it
// came along, or the port when it came from outside.
func edgeOrPort(from, port string) string {
	if from != "" {
		return "edge " + from + " -> " + port
	}
	return "port " + port
}

// withMessageID carries the message ID of from into ctx.
func withMessageID(ctx, from context.Context) context.Context {
	if id := module.MessageID(from); id != "" {
		ctx = module.WithMessageID(ctx, id)
	}
	if span := trace.SpanFromContext(from); span.SpanContext().IsValid() {
		ctx = trace.ContextWithSpan(ctx, span) // what the press starts is its child
	}
	return ctx
}

func (inst *instance) decode(p *port, m *compiledMapping, data any) (any, error) {
	if m != nil {
		if m.err != nil {
			return nil, fmt.Errorf("mapping does not compile: %w", m.err)
		}
		if p.typ != nil {
			// Straight into the port's type, when the defaults and the
			// template allow it.
			ptr := reflect.New(p.typ)
			if p.defaultInto(ptr.Elem(), false) {
				done, out, err := m.tpl.EvalInto(data, ptr.Elem())
				if err != nil {
					return nil, fmt.Errorf("mapping: %w", err)
				}
				if done {
					return ptr.Elem().Interface(), nil
				}
				return p.convertForm(out)
			}
		}
		out, err := m.tpl.EvalValue(data)
		if err != nil {
			return nil, fmt.Errorf("mapping: %w", err)
		}
		return p.convertForm(out)
	}
	return p.convert(data)
}

// handle calls the component, turning a panic into an error, counting, and
// recording a failure.
func (inst *instance) handle(ctx context.Context, p *port, from, portName string, msg any) (result any) {
	start := clock.Now()
	defer func() {
		if r := recover(); r != nil {
			// A bug: trying again would only panic again (and redo whatever
			// the handler did before it), so the error is permanent.
			err := module.Permanent(fmt.Errorf("panic in %s on port %s: %v", inst.name, portName, r))
			inst.s.panicked(inst.name, "Handle on port "+portName, &PanicError{Value: r, Stack: debug.Stack()})
			result = err
		} else if err, ok := result.(error); ok && err != nil {
			inst.s.failed(inst.name, edgeOrPort(from, portName), from, err)
		}
		if p != nil {
			p.observe(start, result)
		}
	}()
	return inst.component.Handle(ctx, inst.output, portName, msg)
}

// send is the instance's output handler.
func (inst *instance) send(ctx context.Context, portName string, data any) any {
	switch portName {
	case v1alpha1.ReconcilePort:
		return inst.reconcileOutput(ctx, data)
	case v1alpha1.ControlPort:
		// The control port's state is part of the published ports, and its
		// type may have changed with it: read them again.
		inst.refreshSoon()
		return nil
	case v1alpha1.SettingsPort:
		return nil
	case v1alpha1.ClientPort:
		return module.Permanent(fmt.Errorf("%s: the %s port is not available in this runtime", inst.name, v1alpha1.ClientPort))
	}

	w := inst.wiring.Load()
	edges := w.edges[portName]
	if len(edges) == 0 {
		if p := w.ports[portName]; p == nil || !p.def.Source {
			return module.Permanent(fmt.Errorf("%w: %s has no output port %q", ErrNoPort, inst.name, portName))
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d := depth(ctx) + 1
	if d > inst.s.opts.MaxDepth {
		return module.Permanent(fmt.Errorf("%s.%s: %w: %d hops", inst.name, portName, ErrDepth, d-1))
	}
	// The hop count travels beside ctx: each target puts it, with its own
	// values, into the one context layer it hands its component.
	switch len(edges) {
	case 0:
		return nil
	case 1:
		return inst.deliverRetrying(ctx, d, edges[0], data)
	}
	return inst.fanOut(ctx, d, edges, data)
}

// fanOut sends data along every edge at once and returns the first error in
// edge order, or else the first edge's result. (Apart from send, so that a
// single edge's message does not escape to the heap with the goroutines'.)
func (inst *instance) fanOut(ctx context.Context, hops int, edges []*edge, data any) any {
	results := make([]any, len(edges))
	var wg sync.WaitGroup
	for i, e := range edges[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i+1] = inst.deliverRetrying(ctx, hops, e, data)
		}()
	}
	results[0] = inst.deliverRetrying(ctx, hops, edges[0], data)
	wg.Wait()
	for _, r := range results {
		if err, ok := r.(error); ok && err != nil {
			return err
		}
	}
	return results[0]
}

// reconcileOutput handles output(ctx, ReconcilePort, x).
func (inst *instance) reconcileOutput(ctx context.Context, data any) any {
	var fn func(*v1alpha1.TinyNode) error
	switch f := data.(type) {
	case nil:
		inst.refreshSoon()
		return nil
	case func(*v1alpha1.TinyNode):
		fn = func(n *v1alpha1.TinyNode) error { f(n); return nil }
	case func(*v1alpha1.TinyNode) error:
		fn = f
	default:
		return module.Permanent(fmt.Errorf("%s: %s takes nil or a func(*v1alpha1.TinyNode), not %T", inst.name, v1alpha1.ReconcilePort, data))
	}
	if inst.s.opts.Status == nil || !inst.s.opts.Leader.Current().Confirm(inst.action) {
		if inst.contract.ForwardMetadata && inst.s.opts.Status != nil {
			return inst.forwardMetadata(ctx, fn) // the leader writes it
		}
		return nil // readers never write
	}
	// The callback is component code, run by the status writer: a panic in
	// it fails this write and is reported as the node's, nothing more.
	guarded := func(n *v1alpha1.TinyNode) (err error) {
		if perr := contain(func() { err = fn(n) }); perr != nil {
			inst.s.panicked(inst.name, "status callback", perr)
			return module.Permanent(perr)
		}
		return err
	}
	if err := inst.s.opts.Status.UpdateStatus(ctx, inst.name, guarded); err != nil {
		if errors.Is(err, ErrNotLeader) && inst.contract.ForwardMetadata {
			// The term ended under the write: the next leader writes it.
			return inst.forwardMetadata(ctx, fn)
		}
		return err
	}
	inst.refreshSoon()
	return nil
}

// deliverRetrying sends data along one edge, again after transient errors as
// the edge's retry policy allows, waiting backoff, then twice as long, ...
func (inst *instance) deliverRetrying(ctx context.Context, hops int, e *edge, data any) any {
	s := inst.s
	res := s.deliver(ctx, hops, e, data)
	backoff := e.backoff
	for attempt := 2; attempt <= e.attempts; attempt++ {
		err, failed := res.(error)
		if !failed || err == nil || module.IsPermanent(err) || ctx.Err() != nil {
			return res
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return res
		case <-t.C:
		}
		backoff *= 2
		res = s.deliver(ctx, hops, e, data)
	}
	return res
}

// deliver sends data, which has taken hops hops with this one, along one edge.
func (s *Scheduler) deliver(ctx context.Context, hops int, e *edge, data any) any {
	if target := s.target(e); target != nil {
		return target.receive(ctx, hops, e, e.id, e.from, e.toPort, data)
	}
	if m := e.remote.Load(); m != nil && s.opts.Transport != nil {
		return s.sendRemote(ctx, hops, e, *m, data)
	}
	node, ok := s.opts.Lookup(e.toNode)
	if !ok || !node.DeletionTimestamp.IsZero() {
		return s.edgeFailed(e, module.Permanent(fmt.Errorf("edge %s to %s: %w", e.id, e.to, ErrNoNode)))
	}
	if node.Spec.Module == s.opts.Module.Name {
		// A node of this module that exists but has not been reconciled yet:
		// start its instance now rather than fail the message.
		problems := s.Update(ctx, node)
		target := s.instance(e.toNode)
		if target == nil {
			return s.edgeFailed(e, fmt.Errorf("edge %s to %s: the node cannot run: %s", e.id, e.to, ProblemsText(problems)))
		}
		return target.receive(ctx, hops, e, e.id, e.from, e.toPort, data)
	}
	if s.opts.Transport == nil {
		return s.edgeFailed(e, module.Permanent(fmt.Errorf("edge %s to %s: node of module %s, and this replica has no transport to other modules", e.id, e.to, node.Spec.Module)))
	}
	remote := node.Spec.Module // not a pointer into node, which it would keep
	e.remote.Store(&remote)
	return s.sendRemote(ctx, hops, e, node.Spec.Module, data)
}

// sendRemote sends data along e to a node of another module.
func (s *Scheduler) sendRemote(ctx context.Context, hops int, e *edge, targetModule string, data any) any {
	res := s.opts.Transport.Send(WithDepth(ctx, hops), targetModule, Msg{To: e.to, From: e.from, Data: data})
	if err, isErr := res.(error); isErr && err != nil {
		s.edgeFailed(e, err)
	}
	return res
}

// edgeFailed records a failure of the sender along e that no target recorded.
func (s *Scheduler) edgeFailed(e *edge, err error) error {
	s.failed(nodeOf(e.from), "edge "+e.id+" -> "+e.to, "", err)
	return err
}

// nodeOf returns the node of "<node>.<port>".
func nodeOf(target string) string {
	node, _, err := SplitTarget(target)
	if err != nil {
		return target
	}
	return node
}

// checkTarget says what is wrong with an edge to toNode.toPort.
func (s *Scheduler) checkTarget(toNode, toPort string) error {
	if target := s.instance(toNode); target != nil {
		p := target.portLocked(toPort)
		if p == nil || p.def.Source {
			return fmt.Errorf("node %s (%s) has no input port %q", toNode, target.componentName, toPort)
		}
		return nil
	}
	node, ok := s.opts.Lookup(toNode)
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoNode, toNode)
	}
	if node.Spec.Module == s.opts.Module.Name {
		if _, ok := s.components[node.Spec.Component]; !ok {
			return fmt.Errorf("node %s has an unknown component %q", toNode, node.Spec.Component)
		}
		if !hasInputPort(s.protoPorts[node.Spec.Component], toPort) {
			return fmt.Errorf("node %s (%s) has no input port %q", toNode, node.Spec.Component, toPort)
		}
		return nil
	}
	// A node of another module: trust its published ports once there are some.
	if len(node.Status.Ports) > 0 {
		for _, p := range node.Status.Ports {
			if p.Name == toPort && !p.Source {
				return nil
			}
		}
		return fmt.Errorf("node %s (module %s) has no input port %q", toNode, node.Spec.Module, toPort)
	}
	return nil
}

func hasInputPort(ports []module.Port, name string) bool {
	if isSystemPort(name) && name != v1alpha1.ReconcilePort {
		return true
	}
	for _, p := range ports {
		if p.Name == name && !p.Source {
			return true
		}
	}
	return false
}

func isSystemPort(name string) bool {
	return len(name) > 0 && name[0] == '_'
}

// port is a component's port with what the runtime derives from it.
type port struct {
	def         module.Port
	typ         reflect.Type // nil: messages pass as they are
	defaultJSON []byte
	// defaultForm is defaultJSON in JSON form, for convertForm.
	defaultFormOnce sync.Once
	defaultForm     any
	// overZero decodes a message over the zero value, not the default; an
	// empty message still gives the default.
	overZero bool
	// zeroDefault: the default is the type's zero value.
	zeroDefault bool
	schema      json.RawMessage

	validatorOnce sync.Once
	validator     *schema.Validator
	validatorErr  error

	m *portMetrics
}

// portsOf builds the port table of a component instance from its ports plus
// the system ports it does not declare.
func (s *Scheduler) portsOf(node string, defs []module.Port, overZero bool) map[string]*port {
	ports := map[string]*port{}
	for _, def := range defs {
		p := &port{def: def, m: s.metrics.forPort(node, def.Name), overZero: overZero}
		if def.Configuration != nil {
			p.typ = reflect.TypeOf(def.Configuration)
			p.defaultJSON, _ = json.Marshal(def.Configuration)
			// Decoding the default first is a no-op when it is the type's
			// zero value (and no custom decoding could make it otherwise).
			p.zeroDefault = reflect.ValueOf(def.Configuration).IsZero() &&
				!reflect.PointerTo(p.typ).Implements(jsonUnmarshaler)
		}
		ports[def.Name] = p
	}
	for _, name := range []string{v1alpha1.ReconcilePort, v1alpha1.ControlPort} {
		if _, ok := ports[name]; !ok {
			ports[name] = &port{def: module.Port{Name: name}, m: s.metrics.forPort(node, name)}
		}
	}
	return ports
}

// passes reports whether convert gives data as it is.
func (p *port) passes(data any) bool {
	return p.typ == nil || data == nil && p.defaultJSON == nil || reflect.TypeOf(data) == p.typ
}

// convert turns a message into a value of the port's type.
func (p *port) convert(data any) (any, error) {
	if p.passes(data) {
		return data, nil
	}
	var raw []byte
	switch d := data.(type) {
	case json.RawMessage:
		raw = d
	case []byte:
		if json.Valid(d) {
			raw = d
		}
	}
	if raw == nil {
		var err error
		if raw, err = json.Marshal(data); err != nil {
			return nil, fmt.Errorf("not JSON-encodable: %w", err)
		}
	}
	return p.decodeJSON(raw)
}

// convertForm is convert for a value in JSON form (a mapping's result): it
// builds the port's value from it directly when mapping.DecodeForm can, as
// decoding its JSON would.
func (p *port) convertForm(form any) (any, error) {
	if p.passes(form) {
		return form, nil
	}
	ptr := reflect.New(p.typ)
	empty := form == nil
	if !p.defaultInto(ptr.Elem(), empty) || !empty && !mapping.DecodeForm(form, ptr.Elem()) {
		return p.convert(form) // encoding/json's turn, and its error
	}
	return ptr.Elem().Interface(), nil
}

// defaultInto puts the port's default into dst, a zero value of its type,
// as a message is decoded over it: unless the port decodes over the zero
// value and the message is not empty, or the default is the zero value.
// False: mapping.DecodeForm left the default to encoding/json.
func (p *port) defaultInto(dst reflect.Value, empty bool) bool {
	if p.overZero && !empty || p.zeroDefault {
		return true
	}
	p.defaultFormOnce.Do(func() {
		if len(p.defaultJSON) > 0 && json.Unmarshal(p.defaultJSON, &p.defaultForm) != nil {
			p.defaultForm = nil
		}
	})
	return p.defaultForm == nil || mapping.DecodeForm(p.defaultForm, dst)
}

// decodeJSON decodes raw over the port's default value (or its zero value,
// with overZero), and gives the default for an empty or null raw.
var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

func (p *port) decodeJSON(raw []byte) (any, error) {
	if p.typ == nil {
		if len(raw) == 0 {
			return nil, nil
		}
		var v any
		err := json.Unmarshal(raw, &v)
		return v, err
	}
	ptr := reflect.New(p.typ)
	empty := len(raw) == 0 || bytes.Equal(raw, []byte("null"))
	if len(p.defaultJSON) > 0 && !p.zeroDefault && (!p.overZero || empty) {
		if err := json.Unmarshal(p.defaultJSON, ptr.Interface()); err != nil {
			return nil, err
		}
	}
	if !empty {
		if err := json.Unmarshal(raw, ptr.Interface()); err != nil {
			return nil, err
		}
	}
	return ptr.Elem().Interface(), nil
}

func (p *port) validate(raw []byte) error {
	p.validatorOnce.Do(func() {
		s, err := schema.For(p.def.Configuration)
		if err != nil {
			p.validatorErr = err
			return
		}
		p.validator, p.validatorErr = schema.NewValidator(s)
	})
	if p.validatorErr != nil {
		return nil // a schema we cannot build does not block settings
	}
	return p.validator.Validate(raw)
}

// ProblemsText joins the problems' messages into one line.
func ProblemsText(problems []Problem) string {
	parts := make([]string, len(problems))
	for i, p := range problems {
		parts[i] = p.Message
	}
	return strings.Join(parts, "; ")
}
