// Package cron fires on a cron schedule, once per scheduled time across the
// module. Only the leader fires, and before it fires a scheduled time it
// records that time in the node's status metadata with a write that is
// fenced by its leadership term and refuses a time at or before the one
// already recorded: a time is fired only by the replica whose record of it
// landed, so no scheduled time fires twice, whatever the failovers. A new
// leader reads the last recorded time and, with catchUp "latest", fires the
// latest scheduled time it missed since then once; with "none" it skips
// what it missed.
//
// Next times come from github.com/robfig/cron/v3's parser and schedules.
package cron

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	_ "time/tzdata" // time zones by IANA name, on images without a zoneinfo database

	"github.com/robfig/cron/v3"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/pkg/utils"
)

// ComponentName is how TinyNodes name this component.
const ComponentName = "cron"

// OutPort carries each firing.
const OutPort = "out"

// Metadata keys, in the node's status.
const (
	// RunningKey is "true" while the cron is started.
	RunningKey = "running"
	// SinceKey is when the cron was started, or its schedule last changed
	// while it ran (RFC 3339, UTC): no time at or before it is fired.
	SinceKey = "since"
	// ScheduledKey is the last scheduled time the leader recorded before
	// firing it (RFC 3339, UTC): no time at or before it is fired again.
	ScheduledKey = "scheduled"
)

// Catch-up modes: what a new leader does with the times missed while no
// replica led.
const (
	// CatchUpLatest fires the latest missed time, once.
	CatchUpLatest = "latest"
	// CatchUpNone skips every missed time.
	CatchUpNone = "none"
)

// DefaultSchedule is every minute, at second 0.
const DefaultSchedule = "* * * * *"

// Settings of a cron node.
type Settings struct {
	Schedule string `json:"schedule" jsonschema:"title=Schedule,description=A cron expression of 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first); or @every <duration> (whole seconds; counted from the start); or @yearly @monthly @weekly @daily @hourly"`
	Timezone string `json:"timezone,omitempty" jsonschema:"title=Time zone,description=IANA name of the time zone the schedule is read in (Europe/Paris); UTC when empty"`
	Context  any    `json:"context,omitempty" jsonschema:"title=Context,description=What each firing carries on out"`
	CatchUp  string `json:"catchUp,omitempty" jsonschema:"title=Catch up,description=What a new leader does with the times missed while no replica led: latest fires the latest of them once; none skips them,enum=latest,enum=none,default=latest"`
}

// Control starts or stops the cron. A control with neither does nothing, so
// a stale stop can never start it.
type Control struct {
	Start bool `json:"start,omitempty" jsonschema:"title=Start"`
	Stop  bool `json:"stop,omitempty" jsonschema:"title=Stop"`
	// Running is the state: read-only.
	Running bool `json:"running,omitempty" jsonschema:"title=Running,readOnly=true"`
}

// Out is one firing.
type Out struct {
	ScheduledAt time.Time `json:"scheduledAt" jsonschema:"title=Scheduled at,description=The scheduled time fired (RFC 3339 in the schedule's time zone)"`
	FiredAt     time.Time `json:"firedAt" jsonschema:"title=Fired at,description=When the leader fired it"`
	Context     any       `json:"context,omitempty" jsonschema:"title=Context,description=The settings' context"`
}

// parser reads 5 or 6 fields (seconds optional) and the @ descriptors.
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// plan is settings read: the schedule parsed in its time zone.
type plan struct {
	settings Settings
	schedule cron.Schedule
	loc      *time.Location
}

// key tells plans apart whose times differ.
func (p plan) key() string { return p.settings.Schedule + "\x00" + p.loc.String() }

func (p plan) catchUp() string {
	if p.settings.CatchUp == "" {
		return CatchUpLatest
	}
	return p.settings.CatchUp
}

// read parses and checks settings.
func read(s Settings) (plan, error) {
	if s.Schedule == "" {
		s.Schedule = DefaultSchedule
	}
	spec := strings.TrimSpace(s.Schedule)
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return plan{}, fmt.Errorf("schedule %q: give the time zone in timezone, not in the schedule", s.Schedule)
	}
	loc := time.UTC
	switch s.Timezone {
	case "", "UTC":
	case "Local":
		return plan{}, errors.New(`timezone "Local" differs from replica to replica: give an IANA name such as Europe/Paris`)
	default:
		var err error
		if loc, err = time.LoadLocation(s.Timezone); err != nil {
			return plan{}, fmt.Errorf("timezone %q: %w", s.Timezone, err)
		}
	}
	switch s.CatchUp {
	case "", CatchUpLatest, CatchUpNone:
	default:
		return plan{}, fmt.Errorf("catchUp %q: want %q or %q", s.CatchUp, CatchUpLatest, CatchUpNone)
	}
	sched, err := parser.Parse(spec)
	if err != nil {
		return plan{}, fmt.Errorf("schedule %q: %w", s.Schedule, err)
	}
	if spec, ok := sched.(*cron.SpecSchedule); ok {
		spec.Location = loc
		if spec.Next(time.Now()).IsZero() {
			return plan{}, fmt.Errorf("schedule %q never fires", s.Schedule)
		}
	}
	return plan{settings: s, schedule: sched, loc: loc}, nil
}

// Component is the cron.
type Component struct {
	// clock is the time source; nil is the system's. Instances inherit it.
	clock clock

	mu        sync.Mutex
	plan      plan
	running   bool      // as metadata says (or this leader just wrote)
	since     time.Time // as metadata says (or this leader just wrote)
	scheduled time.Time // the last recorded time, as metadata says
	loop      *loop     // the leader's timer loop, if any
}

// loop is one run of the leader's timer.
type loop struct {
	parent <-chan struct{} // Done of the context it was started with
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{} // the settings changed
}

// GetInfo describes the component.
func (c *Component) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: ComponentName, Description: "Fires on a cron schedule",
		Info: "While started, fires on out at each time of its cron schedule, once across the module: only the leader fires, " +
			"after recording the time in the node's metadata; a new leader fires the latest time it missed (catchUp latest) or skips them (none).",
		Tags: []string{"SDK"}}
}

// Instance returns a new cron with the default settings.
func (c *Component) Instance() module.Component {
	p, _ := read(Settings{})
	return &Component{clock: c.clock, plan: p}
}

// Ports: settings, control and out.
func (c *Component) Ports() []module.Port {
	c.mu.Lock()
	defer c.mu.Unlock()
	settings := c.plan.settings
	if settings.Schedule == "" {
		settings.Schedule = DefaultSchedule
	}
	if settings.CatchUp == "" {
		settings.CatchUp = CatchUpLatest
	}
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: settings},
		{Name: v1alpha1.ControlPort, Label: "Control", Configuration: Control{Running: c.running}},
		{Name: OutPort, Label: "Out", Source: true, Position: module.Right, Configuration: Out{Context: settings.Context}},
	}
}

// Handle: settings on every replica; control on the leader; metadata from
// _reconcile on every replica, and the leader's timer follows it.
func (c *Component) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		p, err := read(msg.(Settings))
		if err != nil {
			return err // the node keeps its last good settings
		}
		c.mu.Lock()
		changed := c.plan.schedule == nil || c.plan.key() != p.key()
		c.plan = p
		if l := c.loop; l != nil && changed {
			select {
			case l.wake <- struct{}{}:
			default:
			}
		}
		c.mu.Unlock()
	case v1alpha1.ControlPort:
		if !utils.IsLeader(ctx) {
			return nil
		}
		control := msg.(Control)
		switch {
		case control.Start:
			return c.start(ctx, output)
		case control.Stop:
			return c.stop(output)
		}
	case v1alpha1.ReconcilePort:
		node, ok := msg.(*v1alpha1.TinyNode)
		if !ok {
			return nil
		}
		md := node.Status.Metadata
		c.mu.Lock()
		c.running = md[RunningKey] == "true"
		c.since, _ = parseTime(md[SinceKey])
		c.scheduled, _ = parseTime(md[ScheduledKey])
		running := c.running
		c.mu.Unlock()
		switch {
		case !utils.IsLeader(ctx):
			c.stopLoop() // a leader that stops leading stops its timer at once
		case running:
			c.ensureLoop(ctx, output) // a new leader resumes
		default:
			c.stopLoop()
		}
	}
	return nil
}

// start records the cron as started, if it is not, and starts the timer.
func (c *Component) start(ctx context.Context, output module.Handler) any {
	now := c.now()
	var ran, started atomic.Bool
	res := output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) {
		md := metadata(n)
		ran.Store(true)
		started.Store(md[RunningKey] != "true")
		if started.Load() {
			md[RunningKey] = "true"
			md[SinceKey] = formatTime(now)
		}
	})
	if err, ok := res.(error); ok && err != nil {
		return err // the signal is tried again
	}
	if !ran.Load() {
		return nil // no longer the leader: the write did nothing
	}
	c.mu.Lock()
	c.running = true
	if started.Load() && now.After(c.since) {
		c.since = now // before _reconcile brings it: nothing before the start fires
	}
	c.mu.Unlock()
	output(ctx, v1alpha1.ControlPort, nil) // the control port shows running
	if utils.IsLeader(ctx) {
		c.ensureLoop(ctx, output)
	}
	return nil
}

// stop stops the timer at once and records the cron as stopped.
func (c *Component) stop(output module.Handler) any {
	c.stopLoop()
	c.mu.Lock()
	c.running = false
	c.mu.Unlock()
	res := output(context.Background(), v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) {
		metadata(n)[RunningKey] = "false"
	})
	output(context.Background(), v1alpha1.ControlPort, nil)
	if err, ok := res.(error); ok && err != nil {
		return err
	}
	return nil
}

// ensureLoop starts the timer loop under ctx unless one already runs under
// it. A context of another leadership term replaces the loop.
func (c *Component) ensureLoop(ctx context.Context, output module.Handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.loop; l != nil && l.ctx.Err() == nil && l.parent == ctx.Done() {
		return
	}
	if c.loop != nil {
		c.loop.cancel()
	}
	runCtx, cancel := context.WithCancel(ctx)
	l := &loop{parent: ctx.Done(), ctx: runCtx, cancel: cancel, wake: make(chan struct{}, 1)}
	c.loop = l
	go c.run(l, output)
}

func (c *Component) stopLoop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loop != nil {
		c.loop.cancel()
		c.loop = nil
	}
}

// Destroy stops the timer when the node goes.
func (c *Component) Destroy() { c.stopLoop() }

// floorLocked is the time after which times may fire: the later of the
// start and the last recorded time.
func (c *Component) floorLocked() time.Time {
	if c.scheduled.After(c.since) {
		return c.scheduled
	}
	return c.since
}

// run is the leader's timer: it fires each scheduled time once, until its
// context ends (the term, a stop, the node) or leadership is lost.
func (c *Component) run(l *loop, output module.Handler) {
	ctx := l.ctx
	defer func() {
		l.cancel()
		c.mu.Lock()
		if c.loop == l {
			c.loop = nil
		}
		c.mu.Unlock()
	}()
	log := module.Log(ctx)

	// Resuming (a new leader, a start): the times after the last recorded
	// one that are already due were missed.
	c.mu.Lock()
	p := c.plan
	cursor := c.floorLocked()
	c.mu.Unlock()
	now := c.now()
	if cursor.IsZero() {
		cursor = now // metadata without a start time: nothing was missed
	}
	if due, ok := latestDue(p.schedule, cursor, now); ok {
		if p.catchUp() == CatchUpNone {
			log.Info("cron: skipping the times missed while no replica led", "after", cursor, "latest", due)
			cursor = due
		} else {
			log.Info("cron: firing the latest time missed while no replica led", "after", cursor, "latest", due)
		}
	}

	// A time whose record failed is tried again after a backoff, while it
	// is the latest due; the next time replaces it.
	var (
		failedDue, retryAt time.Time
		backoff            time.Duration
	)
	for {
		c.mu.Lock()
		p = c.plan
		if f := c.floorLocked(); f.After(cursor) {
			cursor = f
		}
		c.mu.Unlock()
		now = c.now()
		due, isDue := latestDue(p.schedule, cursor, now)
		if isDue && (!due.Equal(failedDue) || !now.Before(retryAt)) {
			switch c.fire(ctx, output, p, due) {
			case fired, passed:
				cursor, failedDue, backoff = due, time.Time{}, 0
				continue
			case notLeader:
				return // the _reconcile of a next term starts a new loop
			case failed:
				if !due.Equal(failedDue) {
					backoff = 0
				}
				backoff = min(max(2*backoff, retryFirst), retryMax)
				failedDue, retryAt = due, c.now().Add(backoff)
			}
			now = c.now()
		}
		// Wait for the next time, or for the retry of a failed one.
		after := cursor
		if isDue {
			after = due
		}
		var tick <-chan time.Time
		stopTimer := func() {}
		next := nextAfter(p.schedule, after, now)
		if isDue && (next.IsZero() || retryAt.Before(next)) {
			next = retryAt
		}
		if !next.IsZero() { // else the schedule has no more times: wait for new settings
			tick, stopTimer = c.after(next.Sub(now))
		}
		select {
		case <-ctx.Done():
			stopTimer()
			return
		case <-tick:
		case <-l.wake:
			stopTimer()
			// A new schedule counts from now: no time of it before now fires,
			// here or on the next leader.
			now = c.now()
			if now.After(cursor) {
				cursor = now
			}
			failedDue, backoff = time.Time{}, 0
			c.recordSince(ctx, output, now)
		}
	}
}

// Backoff of a record that failed.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 5 * time.Second
)

// outcome of fire.
type outcome int

const (
	fired     outcome = iota // recorded, then sent on out
	passed                   // recorded already (or the cron stopped): not this replica's to fire
	failed                   // the record failed: not fired, may be tried again
	notLeader                // this replica does not lead (any more): not fired
)

// fire records due and, if the record landed under this replica's
// leadership, sends it on out.
func (c *Component) fire(ctx context.Context, output module.Handler, p plan, due time.Time) outcome {
	if !utils.IsLeader(ctx) {
		return notLeader
	}
	var recorded atomic.Bool // the change ran, on the leader's status writer
	res := output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) error {
		md := metadata(n)
		recorded.Store(false)
		if md[RunningKey] != "true" {
			return errStopped
		}
		if last, ok := parseTime(md[ScheduledKey]); ok && !last.Before(due) {
			return fmt.Errorf("%w: %s is recorded", errRecorded, formatTime(last))
		}
		if since, ok := parseTime(md[SinceKey]); ok && !since.Before(due) {
			return fmt.Errorf("%w: started at %s", errRecorded, formatTime(since))
		}
		md[ScheduledKey] = formatTime(due)
		recorded.Store(true)
		return nil
	})
	if err, ok := res.(error); ok && err != nil {
		switch {
		case ctx.Err() != nil || !utils.IsLeader(ctx):
			return notLeader
		case errors.Is(err, errRecorded) || errors.Is(err, errStopped):
			module.Log(ctx).V(1).Info("cron: not firing", "scheduled", due, "reason", err.Error())
			return passed
		}
		module.Log(ctx).Info("cron: could not record the scheduled time; not firing it yet", "scheduled", due, "error", err.Error())
		return failed
	}
	// Only a record that ran and landed, with the leadership still held,
	// lets the time fire. (A reader's write does nothing and reports
	// nothing.)
	if ctx.Err() != nil || !utils.IsLeader(ctx) {
		return notLeader
	}
	if !recorded.Load() {
		return failed
	}
	c.mu.Lock()
	if due.After(c.scheduled) {
		c.scheduled = due
	}
	c.mu.Unlock()
	output(ctx, OutPort, Out{ScheduledAt: due.In(p.loc), FiredAt: c.now().In(p.loc), Context: p.settings.Context})
	return fired
}

// recordSince moves the start of the schedule to now, for the next leader.
func (c *Component) recordSince(ctx context.Context, output module.Handler, now time.Time) {
	if !utils.IsLeader(ctx) {
		return
	}
	output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) {
		md := metadata(n)
		if since, ok := parseTime(md[SinceKey]); md[RunningKey] == "true" && (!ok || since.Before(now)) {
			md[SinceKey] = formatTime(now)
		}
	})
	c.mu.Lock()
	if now.After(c.since) {
		c.since = now
	}
	c.mu.Unlock()
}

var (
	errRecorded = errors.New("the scheduled time is not after the last recorded one")
	errStopped  = errors.New("the cron is stopped")
)

// maxLookBack bounds how far back missed times are looked for.
const maxLookBack = 5 * 366 * 24 * time.Hour

// latestDue returns the latest time of s in (after, now], if any.
func latestDue(s cron.Schedule, after, now time.Time) (time.Time, bool) {
	if s == nil || !now.After(after) {
		return time.Time{}, false
	}
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		// @every counts from after: its times are first, first+d, ...
		first := every.Next(after)
		if first.After(now) || every.Delay <= 0 {
			return time.Time{}, false
		}
		return first.Add(now.Sub(first) / every.Delay * every.Delay), true
	}
	// Look back from now over windows that double: the first window with a
	// time in it holds the latest, and no more than it is walked.
	for w := time.Second; ; w *= 2 {
		from := now.Add(-w)
		reached := !from.After(after) || w >= maxLookBack
		if reached {
			from = after
			if now.Sub(after) > maxLookBack {
				from = now.Add(-maxLookBack)
			}
		}
		if t := s.Next(from); !t.IsZero() && !t.After(now) {
			for {
				n := s.Next(t)
				if n.IsZero() || n.After(now) {
					return t, true
				}
				t = n
			}
		}
		if reached {
			return time.Time{}, false
		}
	}
}

// nextAfter returns the first time of s after cursor and now, when none is
// due in (cursor, now]; zero when there is none.
func nextAfter(s cron.Schedule, cursor, now time.Time) time.Time {
	if s == nil {
		return time.Time{}
	}
	if _, ok := s.(cron.ConstantDelaySchedule); ok || cursor.After(now) {
		return s.Next(cursor) // @every keeps counting from its last time
	}
	return s.Next(now)
}

func metadata(n *v1alpha1.TinyNode) map[string]string {
	if n.Status.Metadata == nil {
		n.Status.Metadata = map[string]string{}
	}
	return n.Status.Metadata
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// clock is the time source, so that tests can drive time.
type clock interface {
	Now() time.Time
	// After returns a channel that receives after d, and a stop.
	After(d time.Duration) (<-chan time.Time, func())
}

func (c *Component) now() time.Time {
	if c.clock != nil {
		return c.clock.Now()
	}
	return time.Now()
}

func (c *Component) after(d time.Duration) (<-chan time.Time, func()) {
	if c.clock != nil {
		return c.clock.After(d)
	}
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}
