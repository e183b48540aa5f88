package ui

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
)

// Snapshot is the whole state a page starts from.
type Snapshot struct {
	Namespace  string                `json:"namespace"`
	Exposed    bool                  `json:"exposed"`
	Nodes      []v1alpha1.TinyNode   `json:"nodes"`
	Modules    []v1alpha1.TinyModule `json:"modules"`
	Flows      []v1alpha1.TinyFlow   `json:"flows"`
	Signals    []v1alpha1.TinySignal `json:"signals"`
	Leadership Leadership            `json:"leadership"`
	Rates      Rates                 `json:"rates"`
	Debug      []DebugMessage        `json:"debug"`
}

// Change is an object's creation, change or deletion.
type Change struct {
	Type   string        `json:"type"` // upsert or delete
	Object client.Object `json:"object"`
}

// Leadership is, per module, who leads and which replicas run.
type Leadership struct {
	Modules map[string]ModuleLeadership `json:"modules"`
}

// ModuleLeadership is one module's Lease, read as the truth: a holder whose
// Lease has expired leads no more.
type ModuleLeadership struct {
	Leader               string            `json:"leader"`
	AcquiredAt           string            `json:"acquiredAt"`
	RenewedAt            string            `json:"renewedAt"`
	LeaseDurationSeconds int32             `json:"leaseDurationSeconds"`
	Expired              bool              `json:"expired"`
	Replicas             []ReplicaLiveness `json:"replicas"`
}

// ReplicaLiveness is one replica as its membership Lease and, under tinymod
// dev, its process say.
type ReplicaLiveness struct {
	Identity    string `json:"identity"`
	Alive       bool   `json:"alive"`
	Leader      bool   `json:"leader"`
	Addr        string `json:"addr"`
	MetricsAddr string `json:"metricsAddr"`
}

// watcher feeds the hub from watches of the namespace.
type watcher struct {
	opts  Options
	hub   *hub
	cache cache.Cache

	mu       sync.Mutex
	replicas []ReplicaLiveness    // last computed, for the scraper
	leases   map[string]leaseSeen // by name

	failure atomic.Pointer[watchFailure] // the last failure of a watch
}

// leaseSeen is when a version of a Lease was first seen here, and whether
// it was seen to change (rather than only listed when the watches
// started).
type leaseSeen struct {
	version string
	at      time.Time
	changed bool
}

// watchFailure is a watch's list or watch that failed, and when.
type watchFailure struct {
	err error
	at  time.Time
}

func newWatcher(opts Options, h *hub) (*watcher, error) {
	w := &watcher{opts: opts, hub: h, leases: map[string]leaseSeen{}}
	c, err := cache.New(opts.Config, cache.Options{
		Scheme:                   replica.Scheme(),
		DefaultNamespaces:        map[string]cache.Config{opts.Namespace: {}},
		DefaultWatchErrorHandler: w.watchError,
	})
	if err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	w.cache = c
	return w, nil
}

// watchError records a failed list or watch (which the informer retries),
// for a page that waits for the watches to sync to learn why they do not.
func (w *watcher) watchError(ctx context.Context, r *toolscache.Reflector, err error) {
	w.failure.Store(&watchFailure{err: err, at: time.Now()})
	toolscache.DefaultWatchErrorHandler(ctx, r, err)
}

// How long a page waits for the watches to sync while one of them fails,
// and for how long a failure counts as current (informers retry at least
// every 30 s).
const (
	syncGrace     = 3 * time.Second
	failureFresh  = time.Minute
	syncPollEvery = 250 * time.Millisecond
)

// waitForSync waits until the watches have listed everything once. While
// one of them keeps failing (a kind the user may not list, a missing CRD)
// it gives up after syncGrace with that failure.
func (w *watcher) waitForSync(ctx context.Context) error {
	start := time.Now()
	for {
		poll, cancel := context.WithTimeout(ctx, syncPollEvery)
		ok := w.cache.WaitForCacheSync(poll)
		cancel()
		if ok {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("ui: the watches have not synced: %w", ctx.Err())
		}
		if f := w.failure.Load(); f != nil && time.Since(start) > syncGrace && time.Since(f.at) < failureFresh {
			return unavailableError{fmt.Errorf("ui: the watches cannot sync: %w", f.err)}
		}
	}
}

// run watches until ctx ends (it then returns nil) or the watches fail,
// and returns once the watches and the scraper have stopped.
func (w *watcher) run(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	var (
		wg        sync.WaitGroup
		informers []cache.Informer
		started   bool
	)
	defer func() {
		cancel()
		wg.Wait()
		if started {
			// The cache of one namespace returns from Start without
			// waiting for its informers.
			deadline := time.Now().Add(2 * time.Second)
			for _, inf := range informers {
				for !inf.IsStopped() && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}
		if errors.Is(err, context.Canceled) {
			err = nil
		}
	}()
	leaseChanged := make(chan struct{}, 1)
	kinds := []struct {
		name string
		obj  client.Object
	}{
		{"node", &v1alpha1.TinyNode{}}, {"module", &v1alpha1.TinyModule{}}, {"flow", &v1alpha1.TinyFlow{}},
		{"signal", &v1alpha1.TinySignal{}}, {"lease", &coordinationv1.Lease{}},
	}
	for _, k := range kinds {
		inf, err := w.cache.GetInformer(ctx, k.obj)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ui: watch %T: %w", k.obj, err)
		}
		informers = append(informers, inf)
		name := k.name
		publish := func(typ string, obj any, listed bool) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			o, ok := obj.(client.Object)
			if !ok {
				return
			}
			if name == "lease" {
				w.seeLease(o, typ == "delete", listed, time.Now())
				select {
				case leaseChanged <- struct{}{}:
				default:
				}
				return
			}
			o = o.DeepCopyObject().(client.Object)
			o.SetManagedFields(nil)
			w.hub.publish(name, Change{Type: typ, Object: o})
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerDetailedFuncs{
			AddFunc:    func(obj any, listed bool) { publish("upsert", obj, listed) },
			UpdateFunc: func(_, obj any) { publish("upsert", obj, false) },
			DeleteFunc: func(obj any) { publish("delete", obj, false) },
		}); err != nil {
			return err
		}
	}
	errs := make(chan error, 1)
	started = true
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs <- w.cache.Start(ctx)
	}()
	synced := make(chan bool, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		synced <- w.cache.WaitForCacheSync(ctx)
	}()
	select {
	case ok := <-synced:
		if !ok {
			return nil // ctx ended
		}
	case err := <-errs:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ui: watches: %v", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.scrape(ctx)
	}()
	// Leadership: on every Lease change, and each interval, since a Lease
	// expires without an event.
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	var last Leadership
	for {
		if l, err := w.leadership(ctx, time.Now()); err == nil && !reflect.DeepEqual(l, last) {
			last = l
			w.hub.publish("leadership", l)
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ui: watches: %v", err)
		case <-leaseChanged:
		case <-t.C:
		}
	}
}

// leadership reads the Leases of the namespace as they stand at now.
func (w *watcher) leadership(ctx context.Context, now time.Time) (Leadership, error) {
	var modules v1alpha1.TinyModuleList
	if err := w.cache.List(ctx, &modules); err != nil {
		return Leadership{}, err
	}
	var leases coordinationv1.LeaseList
	if err := w.cache.List(ctx, &leases); err != nil {
		return Leadership{}, err
	}
	var known []Replica
	if w.opts.Replicas != nil {
		known = w.opts.Replicas()
	}
	out := readLeadership(modules.Items, leases.Items, known, func(l coordinationv1.Lease) bool { return w.leaseValid(l, now) })
	var all []ReplicaLiveness
	for _, m := range out.Modules {
		all = append(all, m.Replicas...)
	}
	w.mu.Lock()
	w.replicas = all
	w.mu.Unlock()
	return out, nil
}

// ReadLeadership is, per module, what its Leases say at now: the leader is
// the holder of "<module>-leader" only while that Lease is valid; a replica
// is alive while its membership Lease is valid and, if known lists it, its
// process runs.
//
// It judges a Lease by its renew time, which its holder wrote on its own
// clock; the server judges the Leases it watches as the runtime does (see
// watcher.leaseValid).
func ReadLeadership(modules []v1alpha1.TinyModule, leases []coordinationv1.Lease, known []Replica, now time.Time) Leadership {
	return readLeadership(modules, leases, known, func(l coordinationv1.Lease) bool { return leaseValid(l, now) })
}

// readLeadership is ReadLeadership with valid saying which Leases hold.
func readLeadership(modules []v1alpha1.TinyModule, leases []coordinationv1.Lease, known []Replica, valid func(coordinationv1.Lease) bool) Leadership {
	out := Leadership{Modules: map[string]ModuleLeadership{}}
	for _, m := range modules {
		out.Modules[m.Name] = ModuleLeadership{Replicas: []ReplicaLiveness{}}
	}
	byName := map[string]coordinationv1.Lease{}
	for _, l := range leases {
		byName[l.Name] = l
		if l.Labels[leader.RoleLabel] == "member" && l.Labels[leader.ModuleLabel] != "" {
			if _, ok := out.Modules[l.Labels[leader.ModuleLabel]]; !ok {
				out.Modules[l.Labels[leader.ModuleLabel]] = ModuleLeadership{Replicas: []ReplicaLiveness{}}
			}
		}
	}
	processes := map[string]Replica{}
	for _, r := range known {
		processes[r.Module+"/"+r.Identity] = r
	}
	for _, name := range slicesSorted(maps.Keys(out.Modules)) {
		m := out.Modules[name]
		if l, ok := byName[replica.LeaseName(name)]; ok {
			holder := deref(l.Spec.HolderIdentity)
			valid := holder != "" && valid(l)
			if p, ok := processes[name+"/"+holder]; ok && !p.Alive {
				valid = false // its process is gone: the Lease only has not expired yet
			}
			m.LeaseDurationSeconds = deref(l.Spec.LeaseDurationSeconds)
			if l.Spec.AcquireTime != nil {
				m.AcquiredAt = l.Spec.AcquireTime.UTC().Format(time.RFC3339Nano)
			}
			if l.Spec.RenewTime != nil {
				m.RenewedAt = l.Spec.RenewTime.UTC().Format(time.RFC3339Nano)
			}
			if valid {
				m.Leader = holder
			} else {
				m.Expired = holder != ""
			}
		}
		seen := map[string]bool{}
		for _, l := range leases {
			if l.Labels[leader.RoleLabel] != "member" || l.Labels[leader.ModuleLabel] != name {
				continue
			}
			id := deref(l.Spec.HolderIdentity)
			alive := valid(l)
			if p, ok := processes[name+"/"+id]; ok {
				alive = alive && p.Alive
			}
			seen[id] = true
			m.Replicas = append(m.Replicas, ReplicaLiveness{Identity: id, Alive: alive, Leader: id == m.Leader && id != "",
				Addr: l.Annotations[leader.AddressAnnotation], MetricsAddr: l.Annotations[leader.MetricsAnnotation]})
		}
		for _, p := range known {
			if p.Module == name && !seen[p.Identity] {
				m.Replicas = append(m.Replicas, ReplicaLiveness{Identity: p.Identity, Alive: false, MetricsAddr: p.MetricsAddr})
			}
		}
		sort.Slice(m.Replicas, func(i, j int) bool { return m.Replicas[i].Identity < m.Replicas[j].Identity })
		out.Modules[name] = m
	}
	return out
}

// seeLease records a version of a Lease as seen at now: listed when the
// watches started, changed since, or deleted.
func (w *watcher) seeLease(o client.Object, deleted, listed bool, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if deleted {
		delete(w.leases, o.GetName())
		return
	}
	if seen, ok := w.leases[o.GetName()]; ok && seen.version == o.GetResourceVersion() {
		return
	}
	w.leases[o.GetName()] = leaseSeen{version: o.GetResourceVersion(), at: now, changed: !listed}
}

// leaseValid judges a Lease as the runtime does (leader.ExpiresAt): it
// holds for its duration from when this server saw it change, on this
// server's clock, so that a holder's clock running ahead or behind does
// not matter. A Lease only listed when the watches started, whose last
// change was not seen, also needs its renew time to say it holds.
func (w *watcher) leaseValid(l coordinationv1.Lease, now time.Time) bool {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return false
	}
	w.mu.Lock()
	seen, ok := w.leases[l.Name]
	w.mu.Unlock()
	switch {
	case !ok:
		return leaseValid(l, now) // not yet seen by the handlers
	case seen.version != l.ResourceVersion:
		return true // a version the handlers have not seen yet: it changed just now
	}
	if !now.Before(seen.at.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)) {
		return false
	}
	return seen.changed || leaseValid(l, now)
}

func leaseValid(l coordinationv1.Lease, now time.Time) bool {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return false
	}
	return l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second).After(now)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func slicesSorted(keys func(func(string) bool)) []string {
	var out []string
	for k := range keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// maxSnapshots bounds how many snapshots are read at once: each copies
// every object of the namespace, and hundreds of pages may ask at once
// (the server restarted, a network came back).
const maxSnapshots = 4

// snapshot reads everything a page starts from, the objects from the
// cache and the rest as the hub had it (see hub.subscribe), and returns it
// encoded: at most maxSnapshots are read and encoded at once.
func (s *Server) snapshot(ctx context.Context, leadership Leadership, rates Rates, debug []DebugMessage, encode func(*Snapshot) ([]byte, error)) ([]byte, error) {
	w := s.w
	if err := w.waitForSync(ctx); err != nil {
		return nil, err
	}
	select {
	case s.snapshots <- struct{}{}:
		defer func() { <-s.snapshots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	snap := &Snapshot{Namespace: s.opts.Namespace, Exposed: s.opts.Expose}
	lists := []client.ObjectList{&v1alpha1.TinyNodeList{}, &v1alpha1.TinyModuleList{}, &v1alpha1.TinyFlowList{}, &v1alpha1.TinySignalList{}}
	for _, l := range lists {
		if err := w.cache.List(ctx, l); err != nil {
			return nil, err
		}
		items, _ := meta.ExtractList(l)
		for _, it := range items {
			it.(client.Object).SetManagedFields(nil)
		}
	}
	snap.Nodes = lists[0].(*v1alpha1.TinyNodeList).Items
	snap.Modules = lists[1].(*v1alpha1.TinyModuleList).Items
	snap.Flows = lists[2].(*v1alpha1.TinyFlowList).Items
	snap.Signals = lists[3].(*v1alpha1.TinySignalList).Items
	snap.Leadership, snap.Rates, snap.Debug = leadership, rates, debug
	if snap.Leadership.Modules == nil {
		if l, err := w.leadership(ctx, time.Now()); err == nil {
			snap.Leadership = l
		}
	}
	return encode(snap)
}
