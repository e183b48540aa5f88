// Package kv is named shared state for a flow: entries of any JSON value
// under string keys, kept in the node's status metadata, so that they survive
// a failover and a restart and every replica has them.
//
// Every replica answers reads (get, query) from its own copy of the node, as
// its _reconcile delivered it. Writes (store, delete) go through the leader:
// the component is a module.LeaderWriter, so output(ctx, ReconcilePort, fn)
// on a reader sends the change to the leader, which writes it under its term,
// and returns once it is written. A write is answered only after that. The
// replica that took a write keeps it in an overlay until its copy of the node
// shows it, so a read there after the answer sees the write.
package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// ComponentName is how TinyNodes name this component.
const ComponentName = "kv"

// Ports.
const (
	StorePort  = "store"
	GetPort    = "get"
	DeletePort = "delete"
	QueryPort  = "query"
	// OutPort carries every read's answer as well: Out{Get: ...} or
	// Out{Query: ...}.
	OutPort = "out"
)

// Defaults and limits.
const (
	DefaultMaxEntries = 1000
	// DefaultMaxBytes bounds the entries' size: status metadata lives in
	// etcd, whose objects are limited to about 1.5 MiB.
	DefaultMaxBytes = 256 << 10
	// MaxMaxBytes is the largest maxBytes the settings take.
	MaxMaxBytes = 1 << 20
	// DefaultPrefix starts the metadata key of every entry.
	DefaultPrefix = "kv."
	// MaxKeyBytes bounds a key.
	MaxKeyBytes = 1024
)

// OverlayHold is how long the replica that took a write shows it from its
// overlay, at most, when its copy of the node never shows exactly that write
// (another replica's write of the same key came right after, and the copy
// went straight to it). A copy that shows the write ends the overlay's entry
// at once.
const OverlayHold = 30 * time.Second

// CatchUpWait is how long a delete waits for this replica's copy of the node
// to show a store this replica acknowledged, before it gives up with a
// transient error: a forwarded delete names only keys the copy has.
const CatchUpWait = 10 * time.Second

// Settings of a kv node.
type Settings struct {
	MaxEntries int    `json:"maxEntries,omitempty" jsonschema:"title=Max entries,description=A store that would make more entries fails,minimum=1"`
	MaxBytes   int    `json:"maxBytes,omitempty" jsonschema:"title=Max bytes,description=A store that would make the entries (keys with the prefix and JSON values) larger fails,minimum=1,maximum=1048576"`
	Prefix     string `json:"prefix,omitempty" jsonschema:"title=Prefix,description=Starts the status metadata key of every entry"`
}

// Store sets key to value.
type Store struct {
	Key   string `json:"key" jsonschema:"title=Key"`
	Value any    `json:"value" jsonschema:"title=Value,description=Any JSON value"`
}

// Get reads key.
type Get struct {
	Key string `json:"key" jsonschema:"title=Key"`
}

// Delete removes key.
type Delete struct {
	Key string `json:"key" jsonschema:"title=Key"`
}

// Query selects the entries for which condition holds.
type Query struct {
	Condition string `json:"condition" jsonschema:"title=Condition,description=Expression over each entry {key value}: $.value.n > 3 or $.key startsWith 'a'"`
}

// Stored answers a store.
type Stored struct {
	Key    string `json:"key"`
	Stored bool   `json:"stored"`
}

// Got answers a get.
type Got struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
	Found bool   `json:"found"`
}

// Deleted answers a delete.
type Deleted struct {
	Key     string `json:"key"`
	Deleted bool   `json:"deleted"`
}

// Entry is one entry of a query's answer.
type Entry struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// Queried answers a query: the matching entries by key. An entry the
// condition cannot be evaluated on (a field it compares is missing, or of
// another type) does not match; Skipped counts those, SkipError is the first
// one's error.
type Queried struct {
	Entries   []Entry `json:"entries"`
	Skipped   int     `json:"skipped,omitempty"`
	SkipError string  `json:"skipError,omitempty"`
}

// Out is what a read sends on out: one of its fields is set.
type Out struct {
	Get   *Got     `json:"get,omitempty"`
	Query *Queried `json:"query,omitempty"`
}

// pending is a write this replica acknowledged that its copy of the node may
// not show yet.
type pending struct {
	raw     string // the metadata value written
	deleted bool
	at      time.Time
}

// parsed is a metadata value and its decoding.
type parsed struct {
	raw   string
	value any
}

// Component is the kv component.
type Component struct {
	mu       sync.Mutex
	settings Settings
	meta     map[string]string // the node's status metadata, as last delivered
	rv       uint64            // its resourceVersion, 0 if unknown
	parsed   map[string]parsed // decoded entries of meta, by metadata key
	overlay  map[string]pending
	inflight map[string]int // stores under way: metadata key -> value bytes
	locks    map[string]*keyLock
	exprs    map[string]*module.Expr
	changed  chan struct{} // closed and replaced by every _reconcile
	done     chan struct{} // closed by Destroy
	now      func() time.Time
}

type keyLock struct {
	ch   chan struct{}
	refs int
}

// GetInfo describes the component.
func (c *Component) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{
		Name:        ComponentName,
		Description: "Named shared state for a flow",
		Info: "Keeps JSON values under keys in the node's status metadata: every replica answers get and query " +
			"from its copy; store and delete go through the leader and are answered once written.",
		Tags: []string{"state"},
	}
}

// Instance returns a new, empty kv.
func (c *Component) Instance() module.Component {
	return &Component{
		settings: defaults(Settings{}),
		meta:     map[string]string{},
		parsed:   map[string]parsed{},
		overlay:  map[string]pending{},
		inflight: map[string]int{},
		locks:    map[string]*keyLock{},
		exprs:    map[string]*module.Expr{},
		changed:  make(chan struct{}),
		done:     make(chan struct{}),
		now:      time.Now,
	}
}

// WritesThroughLeader makes a reader's metadata writes go to the leader.
func (c *Component) WritesThroughLeader() bool { return true }

func defaults(s Settings) Settings {
	if s.MaxEntries <= 0 {
		s.MaxEntries = DefaultMaxEntries
	}
	if s.MaxBytes <= 0 {
		s.MaxBytes = DefaultMaxBytes
	}
	if s.Prefix == "" {
		s.Prefix = DefaultPrefix
	}
	return s
}

// Ports: settings, the four operations and out.
func (c *Component) Ports() []module.Port {
	c.mu.Lock()
	settings := defaults(c.settings)
	c.mu.Unlock()
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: settings},
		{Name: StorePort, Label: "Store", Position: module.Left, Configuration: Store{}, ResponseConfiguration: Stored{}},
		{Name: GetPort, Label: "Get", Position: module.Left, Configuration: Get{}, ResponseConfiguration: Got{}},
		{Name: DeletePort, Label: "Delete", Position: module.Left, Configuration: Delete{}, ResponseConfiguration: Deleted{}},
		{Name: QueryPort, Label: "Query", Position: module.Left, Configuration: Query{}, ResponseConfiguration: Queried{Entries: []Entry{}}},
		{Name: OutPort, Label: "Out", Source: true, Position: module.Right, Configuration: Out{}},
	}
}

// Handle answers reads on every replica and sends writes through the leader.
func (c *Component) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		s, ok := msg.(Settings)
		if !ok {
			return module.Permanent(fmt.Errorf("kv: settings of type %T", msg))
		}
		if s.MaxBytes > MaxMaxBytes {
			return module.Permanent(fmt.Errorf("kv: maxBytes %d is over %d: status metadata lives in etcd, whose objects are limited to about 1.5 MiB", s.MaxBytes, MaxMaxBytes))
		}
		c.mu.Lock()
		c.settings = defaults(s)
		c.mu.Unlock()
	case v1alpha1.ReconcilePort:
		if node, ok := msg.(*v1alpha1.TinyNode); ok {
			c.reconcile(node)
		}
	case StorePort:
		req, ok := msg.(Store)
		if !ok {
			return module.Permanent(fmt.Errorf("kv: store takes {key, value}, not %T", msg))
		}
		return c.store(ctx, output, req)
	case GetPort:
		req, ok := msg.(Get)
		if !ok {
			return module.Permanent(fmt.Errorf("kv: get takes {key}, not %T", msg))
		}
		got := c.get(req.Key)
		if err := sendOut(ctx, output, Out{Get: &got}); err != nil {
			return err
		}
		return got
	case DeletePort:
		req, ok := msg.(Delete)
		if !ok {
			return module.Permanent(fmt.Errorf("kv: delete takes {key}, not %T", msg))
		}
		return c.delete(ctx, output, req.Key)
	case QueryPort:
		req, ok := msg.(Query)
		if !ok {
			return module.Permanent(fmt.Errorf("kv: query takes {condition}, not %T", msg))
		}
		res, err := c.query(req.Condition)
		if err != nil {
			return err
		}
		if err := sendOut(ctx, output, Out{Query: &res}); err != nil {
			return err
		}
		return res
	}
	return nil
}

// sendOut sends a read's answer on out and returns the receivers' error.
func sendOut(ctx context.Context, output module.Handler, out Out) error {
	err, _ := output(ctx, OutPort, out).(error)
	return err
}

// reconcile takes the node's metadata as this replica's copy, and ends the
// overlay's entries the copy shows. A copy older than the last one taken
// (by resourceVersion) is ignored: the runtime hands _reconcile the node it
// holds on a leadership change, from another goroutine than the watch's, so
// an older copy can come after a newer one.
func (c *Component) reconcile(node *v1alpha1.TinyNode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// etcd's resourceVersions are numbers that grow with every write; where
	// they are not (a test's nodes), copies cannot be ordered, and the
	// overlay keeps its entries for OverlayHold.
	rv, err := strconv.ParseUint(node.ResourceVersion, 10, 64)
	ordered := err == nil
	if ordered && rv < c.rv {
		return
	}
	if ordered {
		c.rv = rv
	}
	meta := maps.Clone(node.Status.Metadata)
	if meta == nil {
		meta = map[string]string{}
	}
	c.meta = meta
	for k, p := range c.parsed {
		if meta[k] != p.raw {
			delete(c.parsed, k)
		}
	}
	now := c.now()
	for k, p := range c.overlay {
		if ordered && c.shows(k, p) || now.Sub(p.at) > OverlayHold {
			delete(c.overlay, k)
		}
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// shows reports whether the copy shows the write p of metadata key k; c.mu
// is held.
func (c *Component) shows(k string, p pending) bool {
	v, ok := c.meta[k]
	if p.deleted {
		return !ok
	}
	return ok && v == p.raw
}

// shown reports whether the copy shows the write p of metadata key k and
// will not go back to before it: copies are ordered. c.mu is held.
func (c *Component) shown(k string, p pending) bool {
	return c.rv > 0 && c.shows(k, p)
}

// lookup returns the metadata value of k in this replica's view: the overlay,
// else the copy. c.mu is held.
func (c *Component) lookup(k string) (string, bool) {
	if p, ok := c.overlay[k]; ok && c.now().Sub(p.at) <= OverlayHold {
		return p.raw, !p.deleted
	}
	v, ok := c.meta[k]
	return v, ok
}

func checkKey(key string) error {
	switch {
	case key == "":
		return module.Permanent(errors.New("kv: the key is empty"))
	case len(key) > MaxKeyBytes:
		return module.Permanent(fmt.Errorf("kv: the key is %d bytes, over %d", len(key), MaxKeyBytes))
	case !utf8.ValidString(key):
		return module.Permanent(errors.New("kv: the key is not valid UTF-8"))
	}
	return nil
}

// lockKey serializes this replica's writes of one key, so that the leader
// writes them in the order they are answered; it gives up when ctx ends.
func (c *Component) lockKey(ctx context.Context, k string) (func(), error) {
	c.mu.Lock()
	l := c.locks[k]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		c.locks[k] = l
	}
	l.refs++
	c.mu.Unlock()
	release := func() {
		c.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(c.locks, k)
		}
		c.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	case <-c.done:
		release()
		return nil, errors.New("kv: the node is gone")
	}
}

// WriteTimeout bounds how long a store or delete tries to have its change
// written: as long as a reader's forwarding tries (15 s), which a forwarded
// write spends on its own. A leader's own write that fails for a reason that
// may pass (the status writer ran out of conflict retries while other writes
// of the node raced it) is tried again within it; a write made twice is
// harmless, as a set or a delete of the same key is.
const WriteTimeout = 15 * time.Second

// write has fn's change of the node's metadata written, on the leader or
// through it, trying again after transient errors within WriteTimeout.
func (c *Component) write(ctx context.Context, output module.Handler, fn func(*v1alpha1.TinyNode) error) error {
	deadline := time.Now().Add(WriteTimeout)
	backoff := 50 * time.Millisecond
	for {
		err, _ := output(ctx, v1alpha1.ReconcilePort, fn).(error)
		if err == nil || module.IsPermanent(err) || ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		case <-c.done:
			t.Stop()
			return err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// errNoWrite is returned when output did not run the change: a replica
// without a status writer.
var errNoWrite = module.Permanent(errors.New("kv: this replica cannot write the node's status"))

func (c *Component) store(ctx context.Context, output module.Handler, req Store) any {
	if err := checkKey(req.Key); err != nil {
		return err
	}
	value, err := json.Marshal(req.Value)
	if err != nil {
		return module.Permanent(fmt.Errorf("kv: the value of %q is not JSON: %w", req.Key, err))
	}
	c.mu.Lock()
	k := c.settings.Prefix + req.Key
	c.mu.Unlock()
	unlock, err := c.lockKey(ctx, k)
	if err != nil {
		return err
	}
	defer unlock()
	c.mu.Lock()
	c.inflight[k] = len(value)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.inflight, k)
		c.mu.Unlock()
	}()

	var written string
	err = c.write(ctx, output, func(n *v1alpha1.TinyNode) error {
		// The value always differs from what the node holds, so the write is
		// never found unchanged: a reader sends only what its copy shows
		// changed, and its copy may be behind (its own earlier write of
		// another value, or another replica's). JSON ignores the trailing
		// space.
		raw := string(value)
		if n.Status.Metadata[k] == raw {
			raw += " "
		}
		if err := c.fits(n.Status.Metadata, k, req.Key, len(raw)); err != nil {
			return err
		}
		n.Status.Metadata[k] = raw
		written = raw
		return nil
	})
	if err != nil {
		return err
	}
	if written == "" {
		return errNoWrite
	}
	c.mu.Lock()
	if p := (pending{raw: written}); !c.shown(k, p) {
		p.at = c.now()
		c.overlay[k] = p
	}
	c.mu.Unlock()
	return Stored{Key: req.Key, Stored: true}
}

// fits checks that storing size bytes under metadata key k keeps the entries
// within the bounds, counting node's entries, this replica's acknowledged
// writes and its other stores under way. A store that does not add (an
// entry replaced by one no larger) always fits, so lowering a bound never
// blocks shrinking.
func (c *Component) fits(node map[string]string, k, key string, size int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	prefix, s := c.settings.Prefix, c.settings
	sizes := map[string]int{}
	for mk, v := range node {
		if strings.HasPrefix(mk, prefix) {
			sizes[mk] = len(mk) + len(v)
		}
	}
	for mk, p := range c.overlay {
		switch {
		case !strings.HasPrefix(mk, prefix) || c.now().Sub(p.at) > OverlayHold:
		case p.deleted:
			delete(sizes, mk)
		default:
			sizes[mk] = len(mk) + len(p.raw)
		}
	}
	for mk, n := range c.inflight {
		if mk != k && strings.HasPrefix(mk, prefix) {
			sizes[mk] = len(mk) + n
		}
	}
	before, existed := sizes[k]
	total := 0
	for _, n := range sizes {
		total += n
	}
	entries := len(sizes)
	if !existed {
		entries++
	}
	after := total - before + len(k) + size
	if !existed && entries > s.MaxEntries {
		return module.Permanent(fmt.Errorf("kv: storing %q would make %d entries, over maxEntries %d", key, entries, s.MaxEntries))
	}
	if after > s.MaxBytes && after > total {
		return module.Permanent(fmt.Errorf("kv: storing %q (%d bytes) would make the entries %d bytes, over maxBytes %d", key, len(k)+size, after, s.MaxBytes))
	}
	return nil
}

func (c *Component) get(key string) Got {
	c.mu.Lock()
	raw, ok := c.lookup(c.settings.Prefix + key)
	c.mu.Unlock()
	if !ok {
		return Got{Key: key}
	}
	return Got{Key: key, Value: decode(raw), Found: true}
}

func decode(raw string) any {
	var v any
	if json.Unmarshal([]byte(raw), &v) != nil {
		return raw // not written by kv: the string as it is
	}
	return v
}

func (c *Component) delete(ctx context.Context, output module.Handler, key string) any {
	if err := checkKey(key); err != nil {
		return err
	}
	c.mu.Lock()
	k := c.settings.Prefix + key
	c.mu.Unlock()
	unlock, err := c.lockKey(ctx, k)
	if err != nil {
		return err
	}
	defer unlock()

	// A reader sends the leader only the keys its change removed from its
	// copy: a store this replica acknowledged must be in the copy first.
	wait := time.NewTimer(CatchUpWait)
	defer wait.Stop()
	for {
		c.mu.Lock()
		_, present := c.lookup(k)
		_, inCopy := c.meta[k]
		changed := c.changed
		c.mu.Unlock()
		if !present {
			return Deleted{Key: key}
		}
		if inCopy {
			break
		}
		select {
		case <-changed:
		case <-wait.C:
			return fmt.Errorf("kv: delete %q: this replica's copy of the node does not show its own store of it after %s", key, CatchUpWait)
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return errors.New("kv: the node is gone")
		}
	}

	ran, existed := false, false
	err = c.write(ctx, output, func(n *v1alpha1.TinyNode) error {
		ran = true
		// An earlier attempt may have deleted it and lost only its answer.
		_, found := n.Status.Metadata[k]
		existed = existed || found
		delete(n.Status.Metadata, k)
		return nil
	})
	if err != nil {
		return err
	}
	if !ran {
		return errNoWrite
	}
	c.mu.Lock()
	if p := (pending{deleted: true}); existed && !c.shown(k, p) {
		p.at = c.now()
		c.overlay[k] = p
	} else {
		delete(c.overlay, k) // the write found nothing to delete
	}
	c.mu.Unlock()
	return Deleted{Key: key, Deleted: existed}
}

// maxExprs bounds the compiled conditions kept.
const maxExprs = 64

func (c *Component) query(condition string) (Queried, error) {
	c.mu.Lock()
	expr := c.exprs[condition]
	c.mu.Unlock()
	if expr == nil {
		var err error
		if expr, err = module.CompileExpr(condition); err != nil {
			return Queried{}, module.Permanent(fmt.Errorf("kv: query condition: %w", err))
		}
		c.mu.Lock()
		if len(c.exprs) >= maxExprs {
			clear(c.exprs)
		}
		c.exprs[condition] = expr
		c.mu.Unlock()
	}

	// The view: the copy's entries, with this replica's acknowledged writes.
	type item struct {
		key, raw string
		value    any
	}
	c.mu.Lock()
	prefix := c.settings.Prefix
	keys := map[string]bool{}
	for k := range c.meta {
		if strings.HasPrefix(k, prefix) {
			keys[k] = true
		}
	}
	for k := range c.overlay {
		if strings.HasPrefix(k, prefix) {
			keys[k] = true
		}
	}
	items := make([]item, 0, len(keys))
	for k := range keys {
		raw, ok := c.lookup(k)
		if !ok {
			continue
		}
		p, ok := c.parsed[k]
		if !ok || p.raw != raw {
			p = parsed{raw: raw, value: decode(raw)}
			if c.meta[k] == raw {
				c.parsed[k] = p
			}
		}
		items = append(items, item{key: strings.TrimPrefix(k, prefix), raw: raw, value: p.value})
	}
	c.mu.Unlock()
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.key, b.key) })

	res := Queried{Entries: []Entry{}}
	for _, it := range items {
		v, err := expr.Eval(map[string]any{"key": it.key, "value": it.value})
		if err != nil {
			if res.Skipped++; res.SkipError == "" {
				res.SkipError = fmt.Sprintf("%s: %v", it.key, err)
			}
			continue
		}
		match, ok := v.(bool)
		if !ok {
			return Queried{}, module.Permanent(fmt.Errorf("kv: query condition %q gave %T for %q, not a boolean", condition, v, it.key))
		}
		if match {
			// A value of its own: the receiver may change it.
			res.Entries = append(res.Entries, Entry{Key: it.key, Value: decode(it.raw)})
		}
	}
	return res, nil
}

// Destroy ends the waits of the node's writes.
func (c *Component) Destroy() {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
	default:
		close(c.done)
	}
}
