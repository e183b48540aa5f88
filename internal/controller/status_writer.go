package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/scheduler"
)

// ErrNotLeader is returned for a status write asked of a replica that does not lead.
// It is the scheduler's, so that a component's write that meets the end of
// a term can be told apart.
var ErrNotLeader = scheduler.ErrNotLeader

// DefaultStatusWindow is how long StatusWriter gathers changes to one node
// before writing them together.
const DefaultStatusWindow = 20 * time.Millisecond

// maxConflictRetries bounds how often one batch is re-run after write conflicts.
const maxConflictRetries = 8

// StatusWriter writes TinyNode status on the leader. Changes that arrive for
// one node within Window are applied in order to one fresh copy and written
// once; a write that would change nothing is not made. Each write carries the
// resourceVersion it was computed from, so a conflicting write fails and the
// batch runs again on a fresher copy.
type StatusWriter struct {
	// Client writes status. Required.
	Client client.Client
	// Reader reads the fresh copy each batch starts from; an uncached reader, so
	// a batch never starts from a stale cache. Required.
	Reader client.Reader
	// Namespace of the nodes. Required.
	Namespace string
	// Leader gives the term each change is made in; a change is written only
	// while its term is valid, and the write carries it to the Fence. Required.
	Leader leader.Source
	// Render fills in the status fields the runtime owns (ports, conditions...)
	// before the batch's own changes run. Optional.
	Render func(*v1alpha1.TinyNode)
	// Window is how long changes are gathered. Defaults to DefaultStatusWindow.
	Window time.Duration
	// OnWrite, if set, is called after every successful write.
	OnWrite func(node string)

	mu       sync.Mutex
	written  map[string]string // node -> resourceVersion of the last write
	pending  map[string]*batch
	inflight int        // batches gathered or being written
	idle     *sync.Cond // signalled when inflight drops to zero
}

type batch struct {
	changes []change
}

type change struct {
	fn   func(*v1alpha1.TinyNode) error // nil: render only
	done chan error                     // nil: nobody waits
	term *leader.Term                   // the term the change was asked in
}

// UpdateStatus applies fn (nil: render only) to a fresh copy of the node and
// waits until the result is written, found unchanged, or failed.
func (w *StatusWriter) UpdateStatus(ctx context.Context, node string, fn func(*v1alpha1.TinyNode) error) error {
	term := w.Leader.Current()
	if !term.Confirm("status " + node) {
		return ErrNotLeader
	}
	done := make(chan error, 1)
	w.enqueue(node, change{fn: fn, done: done, term: term})
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Refresh renders the node's status again and writes it if it changed,
// without waiting.
func (w *StatusWriter) Refresh(node string) {
	if term := w.Leader.Current(); term.Confirm("status " + node) {
		w.enqueue(node, change{term: term})
	}
}

// Behind reports whether node is older than this writer's last write of it:
// a copy from a cache that has not seen that write yet. Reconciling such a
// copy would hand the component status it has already moved past (a ticker
// stopped, then restarted by the copy of its start); the write's own watch
// event brings the node again.
func (w *StatusWriter) Behind(node *v1alpha1.TinyNode) bool {
	w.mu.Lock()
	last := w.written[node.Name]
	w.mu.Unlock()
	// resourceVersions are opaque; etcd's are numbers that grow with every
	// write, and only those are compared: anything else is never behind.
	have, err1 := strconv.ParseUint(node.ResourceVersion, 10, 64)
	wrote, err2 := strconv.ParseUint(last, 10, 64)
	return err1 == nil && err2 == nil && have < wrote
}

// Forget drops what the writer knows of a node that is gone.
func (w *StatusWriter) Forget(node string) {
	w.mu.Lock()
	delete(w.written, node)
	w.mu.Unlock()
}

// Flush waits for every pending batch to be written.
func (w *StatusWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.inflight > 0 {
		w.cond().Wait()
	}
}

// FlushWithin is Flush, giving up after timeout (a status callback that
// blocks, an API server that does not answer): a graceful stop must release
// the lease while it still holds it. It reports whether all was written.
func (w *StatusWriter) FlushWithin(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { w.Flush(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// cond returns the idle condition; the caller holds mu.
func (w *StatusWriter) cond() *sync.Cond {
	if w.idle == nil {
		w.idle = sync.NewCond(&w.mu)
	}
	return w.idle
}

func (w *StatusWriter) enqueue(node string, c change) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == nil {
		w.pending = map[string]*batch{}
	}
	if b, ok := w.pending[node]; ok {
		b.changes = append(b.changes, c)
		return
	}
	w.pending[node] = &batch{changes: []change{c}}
	window := w.Window
	if window == 0 {
		window = DefaultStatusWindow
	}
	w.inflight++
	time.AfterFunc(window, func() {
		w.mu.Lock()
		b := w.pending[node]
		delete(w.pending, node)
		w.mu.Unlock()
		w.write(node, b)
		w.mu.Lock()
		w.inflight--
		if w.inflight == 0 {
			w.cond().Broadcast()
		}
		w.mu.Unlock()
	})
}

func (w *StatusWriter) write(name string, b *batch) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results := make([]error, len(b.changes))
	err := w.apply(ctx, name, b, results)
	for i, c := range b.changes {
		if c.done == nil {
			continue
		}
		if err != nil {
			c.done <- err
		} else {
			c.done <- results[i]
		}
	}
}

// apply runs the batch until it is written or found unchanged; results gets
// each change's own error.
func (w *StatusWriter) apply(ctx context.Context, name string, b *batch, results []error) error {
	// The newest term among the changes writes; changes asked in a term
	// that has ended since are not written.
	var term *leader.Term
	for _, c := range b.changes {
		if c.term.Number() >= term.Number() {
			term = c.term
		}
	}
	ctx = leader.WithTerm(ctx, term)
	for attempt := 0; ; attempt++ {
		if !term.Confirm("status " + name) {
			return ErrNotLeader
		}
		node := &v1alpha1.TinyNode{}
		if err := w.Reader.Get(ctx, client.ObjectKey{Namespace: w.Namespace, Name: name}, node); err != nil {
			return fmt.Errorf("read node %s: %w", name, err)
		}
		if !node.DeletionTimestamp.IsZero() && len(node.Finalizers) == 0 {
			return nil
		}
		if node.Status.Metadata == nil {
			node.Status.Metadata = map[string]string{}
		}
		before := node.Status.DeepCopy()
		if w.Render != nil {
			w.Render(node)
		}
		for i, c := range b.changes {
			if c.term != term {
				results[i] = ErrNotLeader
				continue
			}
			if c.fn == nil {
				continue
			}
			trial := node.DeepCopy()
			if err := applyChange(c.fn, trial); err != nil {
				results[i] = err
				continue
			}
			if trial.Status.Metadata == nil {
				trial.Status.Metadata = map[string]string{}
			}
			results[i] = nil
			node = trial
		}
		if sameJSON(before, &node.Status) {
			return nil
		}
		// The lease may have been lost while the changes ran.
		if !term.Confirm("status write " + name) {
			return ErrNotLeader
		}
		err := w.Client.Status().Update(ctx, node)
		switch {
		case err == nil:
			w.mu.Lock()
			if w.written == nil {
				w.written = map[string]string{}
			}
			w.written[name] = node.ResourceVersion
			w.mu.Unlock()
			if w.OnWrite != nil {
				w.OnWrite(name)
			}
			return nil
		case apierrors.IsConflict(err) && attempt < maxConflictRetries:
			continue
		default:
			return fmt.Errorf("write status of node %s: %w", name, err)
		}
	}
}

// applyChange runs fn, turning a panic into the change's error: the writer
// runs on behalf of every node, and one node's bug must not stop it.
func applyChange(fn func(*v1alpha1.TinyNode) error, node *v1alpha1.TinyNode) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("status change panicked: %v", r)
		}
	}()
	return fn(node)
}

// sameJSON reports whether a and b encode to the same JSON document. Status
// holds raw JSON (schemas, metadata values) that the API server hands back
// re-encoded, so comparing Go values byte for byte would see changes that are
// none.
func sameJSON(a, b any) bool {
	var x, y any
	if !decodeJSON(a, &x) || !decodeJSON(b, &y) {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func decodeJSON(v any, into *any) bool {
	data, err := json.Marshal(v)
	return err == nil && json.Unmarshal(data, into) == nil
}
