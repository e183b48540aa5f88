package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/tinymod/tinymod/api/v1alpha1"
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
	component     module.Component
	output        module.Handler
	log           logr.Logger

	// ctx lives as long as the instance; system ports are delivered with it.
	ctx    context.Context
	cancel context.CancelFunc

	// termCtx is ctx also ended by the leadership term termOf; one per term,
	// so that system deliveries do not each hang a new child on ctx.
	termMu  sync.Mutex
	termOf  context.Context
	termCtx context.Context

	// updateMu serialises update so settings are delivered in order.
	updateMu sync.Mutex
	settings []byte // canonical JSON of the settings last delivered
	client   bool   // the resource manager has been delivered on _client

	mu       sync.RWMutex
	ports    map[string]*port   // the component's ports by name
	edges    map[string][]*edge // output port -> its edges, in spec order
	mappings map[mappingKey]*compiledMapping
	node     *v1alpha1.TinyNode
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
}

func (s *Scheduler) newInstance(name, componentName string, c module.Component) *instance {
	log := s.opts.Log.WithValues("node", name)
	status := leader.Named{Status: s.opts.Leader, Action: "node " + name}
	ctx, cancel := context.WithCancel(module.WithLog(leader.NewContext(context.Background(), status), log))
	inst := &instance{
		s: s, name: name, componentName: componentName, component: c,
		ctx: ctx, cancel: cancel, log: log,
		edges:    map[string][]*edge{},
		mappings: map[mappingKey]*compiledMapping{},
	}
	inst.output = inst.send
	inst.ports = s.portsOf(name, c)
	return inst
}

func (inst *instance) destroy() {
	inst.cancel()
	inst.s.metrics.forget(inst.name)
	if d, ok := inst.component.(module.Destroyer); ok {
		func() {
			defer func() {
				if r := recover(); r != nil {
					inst.s.opts.Log.Error(fmt.Errorf("panic: %v", r), "destroy panicked", "node", inst.name, "stack", string(debug.Stack()))
				}
			}()
			d.Destroy()
		}()
	}
}

// update applies a new version of the node's spec.
func (inst *instance) update(node *v1alpha1.TinyNode) []Problem {
	inst.updateMu.Lock()
	defer inst.updateMu.Unlock()

	// Wire first, so a component that acts on its settings (sending on an
	// output) finds its edges; then deliver the settings; if they changed the
	// ports (a router's routes), wire again against the new ones.
	mappings, mappingProblems := compileMappings(node)
	edgeProblems := inst.wire(node, mappings)
	// A component that declares _client gets its resource manager once,
	// before its first settings.
	if !inst.client && inst.s.opts.Resources != nil && inst.portLocked(v1alpha1.ClientPort) != nil {
		inst.client = true
		inst.deliverSystem(v1alpha1.ClientPort, inst.s.opts.Resources(inst.name))
	}
	var settingsRaw []byte
	for _, pc := range node.Spec.Ports {
		if pc.From == "" && pc.Port == v1alpha1.SettingsPort && pc.Configuration != nil {
			settingsRaw = pc.Configuration.Raw
		}
	}
	settingsProblem, changed := inst.settingsLocked(settingsRaw)
	if changed {
		inst.refreshPorts()
		edgeProblems = inst.wire(node, mappings)
	}

	problems := append(edgeProblems, mappingProblems...)
	if settingsProblem != nil {
		problems = append(problems, *settingsProblem)
	}
	if res := inst.deliverSystem(v1alpha1.ReconcilePort, node.DeepCopy()); res != nil {
		if err, ok := res.(error); ok {
			inst.s.opts.Log.Error(err, "reconcile failed", "node", inst.name)
		}
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
func (inst *instance) settingsLocked(raw []byte) (*Problem, bool) {
	p := inst.portLocked(v1alpha1.SettingsPort)
	if p == nil {
		return nil, false // the component takes no settings
	}
	if len(raw) > 0 {
		if err := p.validate(raw); err != nil {
			return &Problem{Reason: ReasonInvalidSettings, Message: fmt.Sprintf("settings break the schema of %s: %v", v1alpha1.SettingsPort, err)}, false
		}
	}
	value, err := p.decodeJSON(raw)
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
	if res := inst.deliverSystem(v1alpha1.SettingsPort, value); res != nil {
		if err, ok := res.(error); ok {
			return &Problem{Reason: ReasonSettingsRejected, Message: fmt.Sprintf("the component rejected its settings: %v", err)}, false
		}
	}
	inst.settings = canonical
	return nil, true
}

// refreshPorts re-reads the component's ports, which may follow its settings.
// Port values are never changed once published (readers hold them without
// the lock): the table is replaced whole.
func (inst *instance) refreshPorts() {
	fresh := inst.s.portsOf(inst.name, inst.component)
	inst.mu.Lock()
	inst.ports = fresh
	inst.mu.Unlock()
}

// deliverSystem hands a system-port message to the component with a context
// that lives as long as the instance and, on the leader, ends with the term.
func (inst *instance) deliverSystem(port string, msg any) any {
	return inst.handle(inst.systemContext(), inst.portLocked(port), port, msg)
}

// systemContext is the context for system ports: the instance's own, also
// cancelled when the current leadership term ends.
func (inst *instance) systemContext() context.Context {
	terms, ok := inst.s.opts.Leader.(leader.Terms)
	if !ok {
		return inst.ctx
	}
	term, leading := terms.Term()
	if !leading {
		return inst.ctx
	}
	inst.termMu.Lock()
	defer inst.termMu.Unlock()
	if inst.termOf != term {
		ctx, cancel := context.WithCancel(inst.ctx)
		context.AfterFunc(term, cancel)
		inst.termOf, inst.termCtx = term, ctx
	}
	return inst.termCtx
}

func (inst *instance) portLocked(name string) *port {
	inst.mu.RLock()
	defer inst.mu.RUnlock()
	return inst.ports[name]
}

// receive decodes a message arriving at one of this node's ports (through the
// mapping of the edge it came along, if there is one) and handles it.
func (inst *instance) receive(ctx context.Context, from, portName string, data any) any {
	inst.mu.RLock()
	p := inst.ports[portName]
	var m *compiledMapping
	if from != "" {
		m = inst.mappings[mappingKey{from: from, port: portName}]
	}
	inst.mu.RUnlock()
	if p == nil {
		return module.Permanent(fmt.Errorf("%w: node %s has no port %q", ErrNoPort, inst.name, portName))
	}
	if p.def.Source {
		return module.Permanent(fmt.Errorf("%w: %s.%s is an output port", ErrNoPort, inst.name, portName))
	}
	msg, err := inst.decode(p, m, data)
	if err != nil {
		return module.Permanent(fmt.Errorf("message for %s.%s: %w", inst.name, portName, err))
	}
	if isSystemPort(portName) {
		// System ports carry the instance's context: it lives as long as the
		// node (and the term), not as long as the message.
		return inst.handle(withMessageID(inst.systemContext(), ctx), p, portName, msg)
	}
	ctx, cancel := context.WithCancel(module.WithLog(ctx, inst.log))
	defer cancel()
	return inst.handle(ctx, p, portName, msg)
}

// withMessageID carries the message ID of from into ctx.
func withMessageID(ctx, from context.Context) context.Context {
	if id := module.MessageID(from); id != "" {
		return module.WithMessageID(ctx, id)
	}
	return ctx
}

func (inst *instance) decode(p *port, m *compiledMapping, data any) (any, error) {
	if m != nil {
		if m.err != nil {
			return nil, fmt.Errorf("mapping does not compile: %w", m.err)
		}
		generic, err := toGeneric(data)
		if err != nil {
			return nil, err
		}
		out, err := m.tpl.Eval(generic)
		if err != nil {
			return nil, fmt.Errorf("mapping: %w", err)
		}
		return p.convert(out)
	}
	return p.convert(data)
}

// handle calls the component, turning a panic into an error and counting.
func (inst *instance) handle(ctx context.Context, p *port, portName string, msg any) (result any) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("panic in %s on port %s: %v", inst.name, portName, r)
			inst.s.opts.Log.Error(err, "handler panicked", "node", inst.name, "port", portName, "stack", string(debug.Stack()))
			result = err
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
		// The control port's state is part of the published ports.
		if inst.s.opts.Status != nil && leader.Authorize(inst.s.opts.Leader, "node "+inst.name) {
			inst.s.opts.Status.Refresh(inst.name)
		}
		return nil
	case v1alpha1.SettingsPort:
		return nil
	case v1alpha1.ClientPort:
		return module.Permanent(fmt.Errorf("%s: the %s port is not available in this runtime", inst.name, v1alpha1.ClientPort))
	}

	inst.mu.RLock()
	edges := inst.edges[portName]
	p := inst.ports[portName]
	inst.mu.RUnlock()
	if p == nil || !p.def.Source {
		return module.Permanent(fmt.Errorf("%w: %s has no output port %q", ErrNoPort, inst.name, portName))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d := depth(ctx) + 1
	if d > inst.s.opts.MaxDepth {
		return module.Permanent(fmt.Errorf("%s.%s: %w: %d hops", inst.name, portName, ErrDepth, d-1))
	}
	ctx = WithDepth(ctx, d)

	switch len(edges) {
	case 0:
		return nil
	case 1:
		return inst.s.deliverRetrying(ctx, edges[0], data)
	}
	results := make([]any, len(edges))
	var wg sync.WaitGroup
	for i, e := range edges[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i+1] = inst.s.deliverRetrying(ctx, e, data)
		}()
	}
	results[0] = inst.s.deliverRetrying(ctx, edges[0], data)
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
		if inst.s.opts.Status != nil && leader.Authorize(inst.s.opts.Leader, "node "+inst.name) {
			inst.s.opts.Status.Refresh(inst.name)
		}
		return nil
	case func(*v1alpha1.TinyNode):
		fn = func(n *v1alpha1.TinyNode) error { f(n); return nil }
	case func(*v1alpha1.TinyNode) error:
		fn = f
	default:
		return module.Permanent(fmt.Errorf("%s: %s takes nil or a func(*v1alpha1.TinyNode), not %T", inst.name, v1alpha1.ReconcilePort, data))
	}
	if inst.s.opts.Status == nil || !leader.Authorize(inst.s.opts.Leader, "node "+inst.name) {
		return nil // readers never write
	}
	if err := inst.s.opts.Status.UpdateStatus(ctx, inst.name, fn); err != nil {
		return err
	}
	return nil
}

// deliverRetrying sends data along one edge, again after transient errors as
// the edge's retry policy allows, waiting backoff, then twice as long, ...
func (s *Scheduler) deliverRetrying(ctx context.Context, e *edge, data any) any {
	res := s.deliver(ctx, e, data)
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
		res = s.deliver(ctx, e, data)
	}
	return res
}

// deliver sends data along one edge.
func (s *Scheduler) deliver(ctx context.Context, e *edge, data any) any {
	if target := s.instance(e.toNode); target != nil {
		return target.receive(ctx, e.from, e.toPort, data)
	}
	node, ok := s.opts.Lookup(e.toNode)
	if !ok {
		return module.Permanent(fmt.Errorf("edge %s to %s: %w", e.id, e.to, ErrNoNode))
	}
	if node.Spec.Module == s.opts.Module.Name {
		// A node of this module that exists but has not been reconciled yet:
		// start its instance now rather than fail the message.
		problems := s.Update(ctx, node)
		target := s.instance(e.toNode)
		if target == nil {
			return fmt.Errorf("edge %s to %s: the node cannot run: %s", e.id, e.to, ProblemsText(problems))
		}
		return target.receive(ctx, e.from, e.toPort, data)
	}
	if s.opts.Transport == nil {
		return module.Permanent(fmt.Errorf("edge %s to %s: node of module %s, and this replica has no transport to other modules", e.id, e.to, node.Spec.Module))
	}
	return s.opts.Transport.Send(ctx, node.Spec.Module, Msg{To: e.to, From: e.from, Data: data})
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
		c, ok := s.components[node.Spec.Component]
		if !ok {
			return fmt.Errorf("node %s has an unknown component %q", toNode, node.Spec.Component)
		}
		if !hasInputPort(c.Ports(), toPort) {
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

// toGeneric turns a Go value into its JSON form for mappings.
func toGeneric(v any) (any, error) {
	switch v.(type) {
	case nil, string, float64, bool, map[string]any, []any:
		return v, nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("message is not JSON-encodable: %w", err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// port is a component's port with what the runtime derives from it.
type port struct {
	def         module.Port
	typ         reflect.Type // nil: messages pass as they are
	defaultJSON []byte
	schema      json.RawMessage

	validatorOnce sync.Once
	validator     *schema.Validator
	validatorErr  error

	m *portMetrics
}

// portsOf builds the port table of a component instance: its own ports plus
// the system ports it does not declare.
func (s *Scheduler) portsOf(node string, c module.Component) map[string]*port {
	ports := map[string]*port{}
	for _, def := range c.Ports() {
		p := &port{def: def, m: s.metrics.forPort(node, def.Name)}
		if def.Configuration != nil {
			p.typ = reflect.TypeOf(def.Configuration)
			p.defaultJSON, _ = json.Marshal(def.Configuration)
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

// convert turns a message into a value of the port's type.
func (p *port) convert(data any) (any, error) {
	if p.typ == nil || data == nil && p.defaultJSON == nil {
		return data, nil
	}
	if reflect.TypeOf(data) == p.typ {
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

// decodeJSON decodes raw over the port's default value.
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
	if len(p.defaultJSON) > 0 {
		if err := json.Unmarshal(p.defaultJSON, ptr.Interface()); err != nil {
			return nil, err
		}
	}
	if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
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
