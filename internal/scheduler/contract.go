package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/contract"
	"github.com/tinymod/tinymod/module"
)

// Contract, ContractHolder and NodeDeleter are the contract's types, kept in
// a package light enough for the compat packages that module authors import.
type (
	Contract       = contract.Contract
	ContractHolder = contract.Holder
	NodeDeleter    = contract.NodeDeleter
)

// deleted tells a NodeDeleter that its node is gone.
func (inst *instance) deleted() {
	d, ok := inst.component.(NodeDeleter)
	if !ok {
		return
	}
	inst.mu.RLock()
	var metadata map[string]string
	if inst.node != nil {
		metadata = maps.Clone(inst.node.Status.Metadata)
	}
	inst.mu.RUnlock()
	if metadata == nil {
		metadata = map[string]string{}
	}
	if err := contain(func() { d.NodeDeleted(metadata) }); err != nil {
		inst.s.panicked(inst.name, "NodeDeleted", err)
	}
}

func contractOf(c module.Component) Contract {
	k := contract.Of(c)
	if w, ok := c.(module.LeaderWriter); ok && w.WritesThroughLeader() {
		k.ForwardMetadata = true
	}
	return k
}

// MetadataPort is where a reader's forwarded metadata writes arrive on the
// leader. It is not a component's port: messages to it from anything but the
// node's own _reconcile (a TinySignal, an edge) are refused.
const MetadataPort = "_metadata"

// MetadataPatch is a change of a node's status metadata.
type MetadataPatch struct {
	Set    map[string]string `json:"set,omitempty"`
	Delete []string          `json:"delete,omitempty"`
}

// diffMetadata returns what turns before into after.
func diffMetadata(before, after map[string]string) MetadataPatch {
	var p MetadataPatch
	for k, v := range after {
		if old, ok := before[k]; !ok || old != v {
			if p.Set == nil {
				p.Set = map[string]string{}
			}
			p.Set[k] = v
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			p.Delete = append(p.Delete, k)
		}
	}
	slices.Sort(p.Delete)
	return p
}

func (p MetadataPatch) empty() bool { return len(p.Set) == 0 && len(p.Delete) == 0 }

func (p MetadataPatch) apply(n *v1alpha1.TinyNode) {
	maps.Copy(n.Status.Metadata, p.Set)
	for _, k := range p.Delete {
		delete(n.Status.Metadata, k)
	}
}

// ForwardTimeout bounds how long a reader tries to hand a metadata write to
// the leader, across a leader change.
const ForwardTimeout = 15 * time.Second

// forwardMetadata runs fn on the reader's copy of the node and sends the
// change to the leader, again while no leader takes it, for ForwardTimeout
// at most. It returns once the leader has written it, or failed to.
func (inst *instance) forwardMetadata(ctx context.Context, fn func(*v1alpha1.TinyNode) error) any {
	inst.mu.RLock()
	node := inst.node
	inst.mu.RUnlock()
	if node == nil {
		return fmt.Errorf("%s: metadata written before the node arrived", inst.name)
	}
	copied := node.DeepCopy()
	if copied.Status.Metadata == nil {
		copied.Status.Metadata = map[string]string{}
	}
	before := maps.Clone(copied.Status.Metadata)
	var err error
	if perr := contain(func() { err = fn(copied) }); perr != nil {
		inst.s.panicked(inst.name, "status callback", perr)
		return module.Permanent(perr)
	}
	if err != nil {
		return err
	}
	patch := diffMetadata(before, copied.Status.Metadata)
	if patch.empty() {
		return nil
	}
	if inst.s.opts.Transport == nil {
		return module.Permanent(fmt.Errorf("%s: a reader's metadata write needs the transport to the leader, and this replica has none", inst.name))
	}
	// The component's context may be a message's, about to end; the write
	// still matters. It ends with the instance, or after ForwardTimeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ForwardTimeout)
	defer cancel()
	defer context.AfterFunc(inst.ctx, cancel)()
	msg := Msg{To: inst.name + "." + MetadataPort, From: inst.name + "." + v1alpha1.ReconcilePort, Data: patch}
	backoff := 100 * time.Millisecond
	for {
		res := inst.s.opts.Transport.Send(ctx, inst.s.opts.Module.Name, msg)
		err, failed := res.(error)
		if !failed || err == nil {
			inst.s.metrics.forwarded.WithLabelValues(inst.s.opts.Module.Name, "sent").Inc()
			inst.refreshSoon() // the ports may follow the state written
			return nil
		}
		if module.IsPermanent(err) || ctx.Err() != nil {
			return inst.forwardFailed(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return inst.forwardFailed(err)
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (inst *instance) forwardFailed(err error) error {
	inst.s.metrics.forwarded.WithLabelValues(inst.s.opts.Module.Name, "failed").Inc()
	inst.s.failed(inst.name, "metadata to the leader", "", err)
	return err
}

// ErrNotLeader is the error a replica gives a forwarded metadata write when
// it does not lead: the sender tries again, at the leader it finds then.
var ErrNotLeader = errors.New("this replica does not lead the module")

// applyForwarded writes a reader's metadata change, on the leader. It needs
// no instance of the node (the status writer reads the node afresh): a
// leader that has not started the node yet writes it all the same. It
// refuses, for good, a change for a node of another module or of a component
// that does not forward its metadata.
func (s *Scheduler) applyForwarded(ctx context.Context, node string, msg Msg) any {
	if msg.From != node+"."+v1alpha1.ReconcilePort {
		return module.Permanent(fmt.Errorf("%w: %s.%s takes only the node's own forwarded metadata", ErrNoPort, node, MetadataPort))
	}
	var patch MetadataPatch
	switch d := msg.Data.(type) {
	case MetadataPatch:
		patch = d
	default:
		raw, err := json.Marshal(d)
		if err == nil {
			err = json.Unmarshal(raw, &patch)
		}
		if err != nil {
			return module.Permanent(fmt.Errorf("metadata for %s: %w", node, err))
		}
	}
	action := "node " + node
	if s.opts.Status == nil || !s.opts.Leader.Current().Confirm(action) {
		return ErrNotLeader
	}
	n, ok := s.opts.Lookup(node)
	if !ok {
		// Not in this replica's cache yet: the sender tries again.
		return fmt.Errorf("metadata for %s: the node is not known here yet", node)
	}
	if n.Spec.Module != s.opts.Module.Name {
		return module.Permanent(fmt.Errorf("metadata for %s: the node belongs to module %s, not %s", node, n.Spec.Module, s.opts.Module.Name))
	}
	if c, ok := s.components[n.Spec.Component]; !ok || !contractOf(c).ForwardMetadata {
		return module.Permanent(fmt.Errorf("metadata for %s: component %q does not forward its metadata", node, n.Spec.Component))
	}
	err := s.opts.Status.UpdateStatus(ctx, node, func(n *v1alpha1.TinyNode) error { patch.apply(n); return nil })
	if err != nil {
		return err
	}
	s.metrics.forwarded.WithLabelValues(s.opts.Module.Name, "written").Inc()
	if inst := s.instance(node); inst != nil {
		inst.refreshSoon()
	}
	return nil
}
