package leader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// Options configure an Elector.
type Options struct {
	Config
	// Client talks to the API server. Required.
	Client kubernetes.Interface
	// Namespace and Name of the Lease. Required.
	Namespace, Name string
	// Identity of this candidate. Required; unique among candidates.
	Identity string
	// Clock defaults to BootClock.
	Clock Clock
	// Log defaults to discarding.
	Log logr.Logger
	// OnStartedLeading is called, in its own goroutine, with the term each
	// time this replica becomes leader.
	OnStartedLeading func(term *Term)
	// OnStoppedLeading is called once a term has ended, before the lease is
	// released when the end is a graceful one.
	OnStoppedLeading func()
	// BeforeRelease runs on graceful stop after leader-only work has stopped
	// and before the lease is released, while it is still held: the place to
	// flush status writes.
	BeforeRelease func()
	// Metrics, if set, records transitions.
	Metrics *Metrics
	// Journal, if set, records every confirmation of leadership (a check
	// that returned true) before the work it allows goes ahead.
	Journal *Journal
}

// Elector campaigns for a Lease and holds it, handing out each acquisition
// as a Term (see Source).
//
// Guarantees, given clocks on all candidates that run at the same rate to
// within (LeaseDuration-RenewDeadline)/LeaseDuration:
//   - A Term is Valid only between a successful acquire or renewal sent at S
//     and S + RenewDeadline, while any other candidate waits at least
//     LeaseDuration from S before it may take the lease. So no two candidates
//     hold a valid term at the same instant, even when a leader is paused or
//     cut off from the API server: it stops on its own clock, one that counts
//     time the machine spent suspended.
//   - A Term's Context ends when the term does: within the check interval
//     (at most RetryPeriod/2) of validity running out, at once when another
//     holder or a released lease is seen, and at once on a call to Valid after
//     validity ran out, even when timers slept through a suspend.
//   - Every write to the Lease carries the resourceVersion it was computed
//     from, so a candidate acting on a stale view fails instead of overwriting;
//     a watch event older than a version already seen is ignored.
//   - Every acquisition gets a new Number, the Lease's transition count, which
//     each acquisition increases, even one by the previous holder.
//   - A released lease is taken as soon as the release is seen (a watch, not a
//     poll), an expired one as soon as it expires.
//
// It does not fence writes made by other means: a component that keeps
// writing after Valid turns false is not stopped by the API server. tinymod's
// own writes carry their Term to the Fence, which checks it as they leave, and
// status writes carry resourceVersion preconditions.
type Elector struct {
	opts Options

	mu         sync.Mutex
	obs        Observation
	lease      *coordinationv1.Lease // last seen, nil if none
	leading    bool
	validUntil time.Duration
	lastSent   time.Duration
	term       *Term
	endTerm    context.CancelFunc
	termTimer  *time.Timer
	stepping   bool // graceful stop: leader-only work is over, lease still held
	seen       bool // the lease, or its absence, has been observed
	observed   chan struct{}
	acquirable time.Duration // when the lease last became acquirable for us
	termNo     int64         // the Lease's transition count for the current term
	// mayHold is set when an acquisition was given up on with its context
	// (the replica stopping): it may have landed all the same.
	mayHold bool
}

// New validates the options and returns an Elector.
func New(opts Options) (*Elector, error) {
	opts.Config = opts.Config.WithDefaults()
	if err := opts.Config.Validate(); err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	switch {
	case opts.Client == nil:
		return nil, errors.New("leader election: a client is required")
	case opts.Namespace == "" || opts.Name == "":
		return nil, errors.New("leader election: the lease's namespace and name are required")
	case opts.Identity == "":
		return nil, errors.New("leader election: an identity is required")
	}
	if opts.Clock == nil {
		opts.Clock = BootClock{}
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	return &Elector{opts: opts, observed: make(chan struct{}, 1)}, nil
}

// Current returns the term this replica holds, or nil when it does not lead
// or has begun to step down.
func (e *Elector) Current() *Term {
	e.mu.Lock()
	t, ok := e.term, e.leading && !e.stepping
	e.mu.Unlock()
	if !ok || !t.Valid() {
		return nil
	}
	return t
}

// valid is a Term's check: the term is the current one and within validity.
// A true answer for a named action is journaled; a term found past its
// validity is ended at once, whatever the timers say.
func (e *Elector) valid(t *Term, action string, journal bool) bool {
	j := e.opts.Journal
	if !journal {
		j = nil
	}
	var start time.Duration
	if j != nil {
		start = MonotonicNow()
	}
	e.mu.Lock()
	now := e.opts.Clock.Now()
	current := e.leading && e.term == t
	ok := current && IsValid(e.validUntil, now)
	until := e.validUntil
	e.mu.Unlock()
	if current && !ok {
		go e.checkValidity()
	}
	if ok && j != nil {
		checked := MonotonicNow()
		// validUntil is on the elector's clock: carry it over as an offset.
		j.record(Claim{Identity: e.opts.Identity, Term: int32(t.Number()), Action: action,
			Start: int64(start), Checked: int64(checked), Until: int64(checked + until - now)})
	}
	return ok
}

// Leader returns the identity of the holder as last observed.
func (e *Elector) Leader() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.obs.Holder
}

// Observed reports whether the Lease (or its absence) has been seen once.
func (e *Elector) Observed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.seen
}

// Run campaigns until ctx ends, then stops leader-only work, runs
// BeforeRelease and releases the lease if it holds it.
func (e *Elector) Run(ctx context.Context) error {
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go e.watch(watchCtx)

	timer := time.NewTimer(0)
	defer timer.Stop()
	backoff := e.opts.RetryPeriod
	for {
		select {
		case <-ctx.Done():
			e.resign()
			return nil
		case <-e.observed:
		case <-timer.C:
		}
		wait, err := e.step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			e.opts.Log.V(1).Info("lease request failed", "error", err.Error())
			if !e.holding() {
				// A candidate backs off while the API server fails it (a
				// change to the lease still wakes it at once); a leader keeps
				// retrying its renewal every retry period.
				wait = backoff
				backoff = min(backoff*2, e.opts.LeaseDuration)
			}
		} else {
			backoff = e.opts.RetryPeriod
		}
		if e.holding() {
			// Go's timers do not count time the machine spent suspended: look
			// at the boot clock often enough to end a term that slept past
			// its validity.
			wait = min(wait, e.opts.RetryPeriod/2)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(wait, time.Millisecond))
	}
}

// holding reports whether a term is held and valid, for the elector's own
// use: not a confirmation for leader-only work, so not journaled.
func (e *Elector) holding() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading && IsValid(e.validUntil, e.opts.Clock.Now())
}

// state is the input of Decide; the caller holds mu.
func (e *Elector) stateLocked() State {
	return State{Identity: e.opts.Identity, Observed: e.seen, Lease: e.obs, Leading: e.leading,
		LastSent: e.lastSent, ValidUntil: e.validUntil}
}

// step carries out what Decide says now and returns how long to wait before
// the next step (unless something is observed sooner).
func (e *Elector) step(ctx context.Context) (time.Duration, error) {
	e.mu.Lock()
	now := e.opts.Clock.Now()
	d := Decide(e.opts.Config, e.stateLocked(), now)
	lease := e.lease
	if d.Step == Acquire && e.acquirable == 0 {
		e.acquirable = now
	}
	e.mu.Unlock()

	switch d.Step {
	case EndTerm:
		e.endLeadership(d.Reason)
		return 0, nil
	case Renew:
		return d.Wait, e.renew(ctx)
	case Acquire:
		return d.Wait, e.acquire(ctx, lease)
	}
	return d.Wait, nil
}

func (e *Elector) leaseSpec(now metav1.MicroTime, transitions int32, acquired metav1.MicroTime) coordinationv1.LeaseSpec {
	secs := int32((e.opts.LeaseDuration + time.Second - 1) / time.Second)
	return coordinationv1.LeaseSpec{
		HolderIdentity:       &e.opts.Identity,
		LeaseDurationSeconds: &secs,
		AcquireTime:          &acquired,
		RenewTime:            &now,
		LeaseTransitions:     &transitions,
	}
}

func (e *Elector) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.opts.RenewDeadline)
}

func (e *Elector) acquire(ctx context.Context, lease *coordinationv1.Lease) error {
	leases := e.opts.Client.CoordinationV1().Leases(e.opts.Namespace)
	rctx, cancel := e.requestContext(ctx)
	defer cancel()
	now := metav1.NowMicro()
	sent := e.opts.Clock.Now()
	var (
		got *coordinationv1.Lease
		err error
	)
	if lease == nil {
		got, err = leases.Create(rctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: e.opts.Name, Namespace: e.opts.Namespace},
			Spec:       e.leaseSpec(now, 0, now),
		}, metav1.CreateOptions{})
	} else {
		next := lease.DeepCopy()
		transitions := int32(0)
		if lease.Spec.LeaseTransitions != nil {
			transitions = *lease.Spec.LeaseTransitions
		}
		// Every acquisition is a new term with a new number, even when the
		// lease still names this replica (its term ended unrenewed).
		transitions++
		acquired := now
		next.Spec = e.leaseSpec(now, transitions, acquired)
		got, err = leases.Update(rctx, next, metav1.UpdateOptions{})
	}
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			e.refresh(ctx)
		}
		if ctx.Err() != nil {
			e.mu.Lock()
			e.mayHold = true
			e.mu.Unlock()
		}
		return fmt.Errorf("acquire lease %s: %w", e.opts.Name, err)
	}
	e.startTerm(got, sent)
	return nil
}

func (e *Elector) renew(ctx context.Context) error {
	if e.endIfDecided() {
		return nil // the lease is no longer ours, or validity ran out
	}
	e.mu.Lock()
	lease := e.lease
	// A renewal that cannot finish before validity ends is useless: bound it.
	remaining := e.validUntil - e.opts.Clock.Now()
	e.mu.Unlock()
	if lease == nil || remaining <= 0 {
		return nil // the next step ends the term
	}
	rctx, cancel := context.WithTimeout(ctx, remaining)
	defer cancel()
	next := lease.DeepCopy()
	now := metav1.NowMicro()
	next.Spec.RenewTime = &now
	sent := e.opts.Clock.Now()
	got, err := e.opts.Client.CoordinationV1().Leases(e.opts.Namespace).Update(rctx, next, metav1.UpdateOptions{})
	if err != nil {
		if apierrors.IsConflict(err) {
			// Someone else wrote the lease: we may have lost it.
			e.refresh(ctx)
		}
		e.checkValidity()
		return fmt.Errorf("renew lease %s: %w", e.opts.Name, err)
	}
	e.mu.Lock()
	if e.leading {
		e.lease = got
		e.obs = Observe(e.obs, observation(got), sent)
		e.lastSent = sent
		e.validUntil = ValidUntil(e.opts.Config, sent)
		e.scheduleTermEndLocked()
	}
	e.mu.Unlock()
	return nil
}

// refresh reads the lease now rather than waiting for the watch.
func (e *Elector) refresh(ctx context.Context) {
	rctx, cancel := e.requestContext(ctx)
	defer cancel()
	got, err := e.opts.Client.CoordinationV1().Leases(e.opts.Namespace).Get(rctx, e.opts.Name, metav1.GetOptions{})
	switch {
	case err == nil:
		e.see(got)
	case apierrors.IsNotFound(err):
		e.see(nil)
	}
}

func (e *Elector) startTerm(lease *coordinationv1.Lease, sent time.Duration) {
	e.mu.Lock()
	e.lease = lease
	e.obs = Observe(e.obs, observation(lease), sent)
	e.lastSent = sent
	e.validUntil = ValidUntil(e.opts.Config, sent)
	if e.leading {
		e.scheduleTermEndLocked()
		e.mu.Unlock()
		return
	}
	number := int64(deref(lease.Spec.LeaseTransitions))
	e.termNo = number
	e.leading = true
	e.stepping = false
	ctx, cancel := context.WithCancel(context.Background())
	// A term is checked by identity, not by number alone: a Lease deleted
	// and made again starts its count over, and a term never comes back.
	var t *Term
	t = NewTerm(number, ctx, func(action string, journal bool) bool { return e.valid(t, action, journal) })
	e.term = t
	e.endTerm = cancel
	term := e.term
	waited := sent - e.acquirable
	e.acquirable = 0
	e.scheduleTermEndLocked()
	e.mu.Unlock()

	e.opts.Log.Info("became leader", "lease", e.opts.Name, "term", number)
	if m := e.opts.Metrics; m != nil {
		m.started(waited)
	}
	if f := e.opts.OnStartedLeading; f != nil {
		go f(term)
	}
}

// scheduleTermEndLocked arms a timer that ends the term the instant validity
// runs out, whatever the loop is doing (blocked in a request, say).
func (e *Elector) scheduleTermEndLocked() {
	if e.termTimer != nil {
		e.termTimer.Stop()
	}
	wait := e.validUntil - e.opts.Clock.Now()
	e.termTimer = time.AfterFunc(max(wait, 0), e.checkValidity)
}

func (e *Elector) checkValidity() { e.endIfDecided() }

// endIfDecided ends the term when Decide says so. Besides the loop's own
// step, it is the one place that acts on EndTerm, for what happens between
// steps: a watch event, the validity timer, a renewal about to be sent. The
// rules stay in Decide.
func (e *Elector) endIfDecided() bool {
	e.mu.Lock()
	d := Decide(e.opts.Config, e.stateLocked(), e.opts.Clock.Now())
	e.mu.Unlock()
	if d.Step != EndTerm {
		return false
	}
	e.endLeadership(d.Reason)
	return true
}

// endLeadership ends the term; it is a no-op when not leading.
func (e *Elector) endLeadership(why string) {
	e.mu.Lock()
	if !e.leading || e.stepping {
		// Not leading, or stepping down: resign ends the term, once.
		e.mu.Unlock()
		return
	}
	e.leading = false
	e.stepping = false
	e.endTerm()
	if e.termTimer != nil {
		e.termTimer.Stop()
	}
	term := e.termNo
	e.mu.Unlock()
	if j := e.opts.Journal; j != nil {
		j.endTerm(e.opts.Identity, int32(term))
	}
	e.opts.Log.Info("lost leadership", "reason", why, "term", term)
	if m := e.opts.Metrics; m != nil {
		m.stopped()
	}
	if f := e.opts.OnStoppedLeading; f != nil {
		f()
	}
	select { // run for the lease again at once
	case e.observed <- struct{}{}:
	default:
	}
}

// resign stops leader-only work, flushes, and releases the lease.
func (e *Elector) resign() {
	e.mu.Lock()
	if !e.leading {
		mayHold := e.mayHold
		e.mu.Unlock()
		if mayHold {
			e.releaseIfOurs()
		}
		return
	}
	e.stepping = true
	e.endTerm()
	lease := e.lease
	e.mu.Unlock()
	e.opts.Log.Info("stepping down")
	if f := e.opts.OnStoppedLeading; f != nil {
		f()
	}
	if f := e.opts.BeforeRelease; f != nil {
		f()
	}
	e.mu.Lock()
	stillValid := e.leading && IsValid(e.validUntil, e.opts.Clock.Now())
	e.leading = false
	if e.termTimer != nil {
		e.termTimer.Stop()
	}
	term := e.termNo
	e.mu.Unlock()
	if j := e.opts.Journal; j != nil {
		j.endTerm(e.opts.Identity, int32(term))
	}
	if m := e.opts.Metrics; m != nil {
		m.stopped()
	}
	if !stillValid || lease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.RenewDeadline)
	defer cancel()
	leases := e.opts.Client.CoordinationV1().Leases(e.opts.Namespace)
	for attempt := 0; attempt < 3; attempt++ {
		next := lease.DeepCopy()
		empty := ""
		one := int32(1)
		now := metav1.NowMicro()
		next.Spec.HolderIdentity = &empty
		next.Spec.LeaseDurationSeconds = &one
		next.Spec.RenewTime = &now
		_, err := leases.Update(ctx, next, metav1.UpdateOptions{})
		if err == nil {
			e.opts.Log.Info("released lease", "lease", e.opts.Name)
			return
		}
		if !apierrors.IsConflict(err) {
			e.opts.Log.Error(err, "release lease")
			return
		}
		// A renewal given up on (its context ended with ours) may have landed
		// after all: release the newer version if it is still ours.
		fresh, err := leases.Get(ctx, e.opts.Name, metav1.GetOptions{})
		if err != nil || holder(fresh) != e.opts.Identity {
			return
		}
		lease = fresh
	}
}

// releaseIfOurs releases the lease if it names this replica: an acquisition
// given up on as the replica stopped may have landed, and the others must
// not wait a lease duration for a replica that is gone.
func (e *Elector) releaseIfOurs() {
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.RenewDeadline)
	defer cancel()
	leases := e.opts.Client.CoordinationV1().Leases(e.opts.Namespace)
	l, err := leases.Get(ctx, e.opts.Name, metav1.GetOptions{})
	if err != nil || holder(l) != e.opts.Identity {
		return
	}
	empty := ""
	one := int32(1)
	now := metav1.NowMicro()
	l.Spec.HolderIdentity = &empty
	l.Spec.LeaseDurationSeconds = &one
	l.Spec.RenewTime = &now
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		e.opts.Log.Error(err, "release a lease acquired while stopping")
		return
	}
	e.opts.Log.Info("released a lease acquired while stopping", "lease", e.opts.Name)
}

// watch feeds every version of the lease into the loop, re-listing after errors.
func (e *Elector) watch(ctx context.Context) {
	leases := e.opts.Client.CoordinationV1().Leases(e.opts.Namespace)
	selector := fields.OneTermEqualSelector("metadata.name", e.opts.Name).String()
	for ctx.Err() == nil {
		list, err := leases.List(ctx, metav1.ListOptions{FieldSelector: selector})
		if err != nil {
			sleep(ctx, e.opts.RetryPeriod)
			continue
		}
		if len(list.Items) == 0 {
			e.see(nil)
		} else {
			e.see(&list.Items[0])
		}
		w, err := leases.Watch(ctx, metav1.ListOptions{FieldSelector: selector, ResourceVersion: list.ResourceVersion, AllowWatchBookmarks: true})
		if err != nil {
			sleep(ctx, e.opts.RetryPeriod)
			continue
		}
		for ev := range w.ResultChan() {
			switch lease := ev.Object.(type) {
			case *coordinationv1.Lease:
				switch ev.Type {
				case "ADDED", "MODIFIED":
					e.see(lease)
				case "DELETED":
					e.see(nil)
				}
			}
		}
		w.Stop()
	}
}

// see records a version of the lease (nil: none) and wakes the loop.
func (e *Elector) see(lease *coordinationv1.Lease) {
	now := e.opts.Clock.Now()
	e.mu.Lock()
	if lease != nil && e.lease != nil && !Newer(e.lease.ResourceVersion, lease.ResourceVersion) {
		// The same version again, or a lagging watch event older than a
		// version already read: nothing new.
		e.mu.Unlock()
		return
	}
	if lease == nil {
		e.obs = Observe(e.obs, Observation{}, now)
	} else {
		e.obs = Observe(e.obs, observation(lease), now)
	}
	e.lease = lease
	e.seen = true
	e.mu.Unlock()
	e.endIfDecided()
	select {
	case e.observed <- struct{}{}:
	default:
	}
}

func observation(l *coordinationv1.Lease) Observation {
	o := Observation{Exists: true, Holder: holder(l), Transitions: deref(l.Spec.LeaseTransitions), Version: l.ResourceVersion}
	if l.Spec.LeaseDurationSeconds != nil {
		o.LeaseDuration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return o
}

func holder(l *coordinationv1.Lease) string {
	if l == nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func deref(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
