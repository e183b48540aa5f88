package controller

import (
	"context"
	"encoding/json"
	"errors"
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

// DefaultStatusWorkers is how many batches StatusWriter writes at once.
const DefaultStatusWorkers = 8

// maxConflictRetries bounds how often one batch is re-run after write conflicts.
const maxConflictRetries = 8

// Backoff of a node whose status write failed: the writer renders and
// writes it again, since nobody waits for a render.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 10 * time.Second
)

// StatusWriter writes TinyNode status on the leader. Changes that arrive for
// one node within Window are applied in order to one copy and written once;
// a write that would change nothing is not made. Each write carries the
// resourceVersion it was computed from, so a conflicting write fails and the
// batch runs again on a fresh copy.
//
// A batch that only renders (a reconcile's, a refresh's) starts from the
// cache, unless the cache is behind this writer's own last write: a stale
// copy costs a conflict, never a wrong write, and the cache's next event
// renders again. A batch with a component's change starts from the API
// server. Batches someone waits for are written before those nobody waits
// for, so a component's write is not queued behind a start-up's thousands of
// renders; a render whose write fails is tried again with backoff while the
// term lasts.
type StatusWriter struct {
	// Client writes status, and reads the copy a render starts from (the
	// manager's client reads from its cache). Required.
	Client client.Client
	// Reader reads the fresh copy a component's change starts from, and
	// every batch after a conflict: an uncached reader. Required.
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
	// Workers bounds the batches written at once. Defaults to DefaultStatusWorkers.
	Workers int
	// OnWrite, if set, is called after every successful write.
	OnWrite func(node string)

	mu       sync.Mutex
	written  map[string]string // node -> resourceVersion of the last write
	pending  map[string]*batch // gathering changes, or waiting for a worker
	urgent   []*batch          // ready, someone waits for them
	queued   []*batch          // ready, nobody waits
	running  int               // workers
	retries  map[string]time.Duration
	inflight int        // batches gathered or being written, and changes waiting to be tried again
	idle     *sync.Cond // signalled when inflight drops to zero
}

type batch struct {
	node    string
	changes []change
	ready   bool // its window has passed: it is in a queue
	urgent  bool // in the urgent queue
	taken   bool // a worker has it
}

func (b *batch) waited() bool {
	for _, c := range b.changes {
		if c.done != nil {
			return true
		}
	}
	return false
}

type change struct {
	fn    func(*v1alpha1.TinyNode) error // nil: render only
	done  chan error                     // nil: nobody waits
	term  *leader.Term                   // the term the change was asked in
	asked time.Time
}

// changeRetryFor bounds how long a component's change is tried again while
// its writes fail for a reason that may pass (an API server that answers
// 503 or 429, or not at all) before its caller gets the error.
const changeRetryFor = 30 * time.Second

// UpdateStatus applies fn (nil: render only) to a fresh copy of the node and
// waits until the result is written, found unchanged, or failed.
func (w *StatusWriter) UpdateStatus(ctx context.Context, node string, fn func(*v1alpha1.TinyNode) error) error {
	term := w.Leader.Current()
	if !term.Confirm("status " + node) {
		return ErrNotLeader
	}
	done := make(chan error, 1)
	w.enqueue(node, change{fn: fn, done: done, term: term, asked: time.Now()})
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
	delete(w.retries, node)
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
		if c.done != nil && b.ready && !b.urgent {
			// Queued behind renders: it moves ahead (its old place is
			// skipped, as a taken batch is).
			b.urgent = true
			w.urgent = append(w.urgent, b)
		}
		return
	}
	b := &batch{node: node, changes: []change{c}}
	w.pending[node] = b
	window := w.Window
	if window == 0 {
		window = DefaultStatusWindow
	}
	w.inflight++
	time.AfterFunc(window, func() { w.ready(b) })
}

// ready queues a batch whose window has passed, and starts a worker if fewer
// than Workers run.
func (w *StatusWriter) ready(b *batch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b.ready = true
	if b.waited() {
		b.urgent = true
		w.urgent = append(w.urgent, b)
	} else {
		w.queued = append(w.queued, b)
	}
	workers := w.Workers
	if workers <= 0 {
		workers = DefaultStatusWorkers
	}
	if w.running < workers {
		w.running++
		go w.work()
	}
}

// work writes queued batches, urgent ones first, until none is left.
func (w *StatusWriter) work() {
	w.mu.Lock()
	for {
		b := w.next()
		if b == nil {
			w.running--
			w.mu.Unlock()
			return
		}
		// Changes that arrive from now on make a batch of their own.
		if w.pending[b.node] == b {
			delete(w.pending, b.node)
		}
		w.mu.Unlock()
		w.write(b.node, b)
		w.mu.Lock()
		w.settledLocked()
	}
}

// settled counts one batch, or the changes waiting to be tried again
// after one, out of flight.
func (w *StatusWriter) settled() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.settledLocked()
}

func (w *StatusWriter) settledLocked() {
	w.inflight--
	if w.inflight == 0 {
		w.cond().Broadcast()
	}
}

// next takes the next batch to write; the caller holds mu.
func (w *StatusWriter) next() *batch {
	for _, q := range []*[]*batch{&w.urgent, &w.queued} {
		for len(*q) > 0 {
			b := (*q)[0]
			(*q)[0] = nil
			*q = (*q)[1:]
			if len(*q) == 0 {
				*q = nil // let the backing array go
			}
			if !b.taken {
				b.taken = true
				return b
			}
		}
	}
	return nil
}

func (w *StatusWriter) write(name string, b *batch) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results := make([]error, len(b.changes))
	err := w.apply(ctx, name, b, results)
	wait := w.backoff(name, err)
	var again []change
	for i, c := range b.changes {
		if c.done == nil {
			continue
		}
		if err != nil && wait > 0 && c.fn != nil && c.term.Valid() && time.Since(c.asked) < changeRetryFor {
			// A component's change (a ticker's "running") is not lost to a
			// failure that may pass: it goes with the retry's render, and
			// its caller waits on.
			again = append(again, c)
			continue
		}
		if err != nil {
			c.done <- err
		} else {
			c.done <- results[i]
		}
	}
	if wait > 0 {
		w.retryLater(name, wait, again)
	}
}

// retryLater renders the node again after wait, with the component's
// changes that are tried again: nobody else would render it, now that
// reconciles do not wait for their writes. The changes count as in flight
// meanwhile, so a graceful stop's flush waits for them.
func (w *StatusWriter) retryLater(name string, wait time.Duration, again []change) {
	if len(again) > 0 {
		w.mu.Lock()
		w.inflight++
		w.mu.Unlock()
	}
	time.AfterFunc(wait, func() {
		for _, c := range again {
			w.enqueue(name, c)
		}
		w.Refresh(name)
		if len(again) > 0 {
			w.settled()
		}
	})
}

// backoff returns how long to wait before the node's write is tried again
// after err, a failure that may pass, doubling with each failure in a row;
// zero if err is none or will not pass.
func (w *StatusWriter) backoff(name string, err error) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil || errors.Is(err, ErrNotLeader) || apierrors.IsNotFound(err) || apierrors.IsInvalid(err) {
		delete(w.retries, name)
		return 0
	}
	if w.retries == nil {
		w.retries = map[string]time.Duration{}
	}
	wait := w.retries[name]
	if wait == 0 {
		wait = retryFirst
	}
	w.retries[name] = min(2*wait, retryMax)
	return wait
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
	// A render may start from the cache; a component's change, which must
	// not be found "unchanged" on a stale copy, from the API server.
	fresh := false
	for _, c := range b.changes {
		fresh = fresh || c.fn != nil
	}
	for attempt := 0; ; attempt++ {
		if !term.Confirm("status " + name) {
			return ErrNotLeader
		}
		node, err := w.read(ctx, name, fresh)
		if err != nil {
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
		err = w.Client.Status().Update(ctx, node)
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
			fresh = true
			continue
		default:
			return fmt.Errorf("write status of node %s: %w", name, err)
		}
	}
}

// read returns the node to apply a batch to: the cache's copy unless fresh
// is asked, or the cache lacks the node or is behind this writer's last write.
func (w *StatusWriter) read(ctx context.Context, name string, fresh bool) (*v1alpha1.TinyNode, error) {
	key := client.ObjectKey{Namespace: w.Namespace, Name: name}
	node := &v1alpha1.TinyNode{}
	if !fresh {
		if err := w.Client.Get(ctx, key, node); err == nil && !w.Behind(node) {
			return node, nil
		}
		node = &v1alpha1.TinyNode{}
	}
	if err := w.Reader.Get(ctx, key, node); err != nil {
		return nil, err
	}
	return node, nil
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
