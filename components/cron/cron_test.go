package cron

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
	"github.com/tinymod/tinymod/module/moduletest"
)

// fakeClock is a clock the test moves by hand. Timers fire when it is set
// past them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]struct{}
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, timers: map[*fakeTimer]struct{}{}}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) (<-chan time.Time, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{at: f.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- f.now
		return t.ch, func() {}
	}
	f.timers[t] = struct{}{}
	return t.ch, func() {
		f.mu.Lock()
		delete(f.timers, t)
		f.mu.Unlock()
	}
}

// Set moves the clock to now and fires the timers due by then.
func (f *fakeClock) Set(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
	for t := range f.timers {
		if !t.at.After(now) {
			t.ch <- now
			delete(f.timers, t)
		}
	}
}

// Waiting is how many timers are armed: 1 while a leader's loop waits.
func (f *fakeClock) Waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// t0 is a Monday in winter, a quarter second past 10:00:00 UTC.
var t0 = time.Date(2026, 1, 5, 10, 0, 0, 250e6, time.UTC)

func at(sec int) time.Time { return time.Date(2026, 1, 5, 10, 0, sec, 0, time.UTC) }

const wait = 10 * time.Second

// rig is a flow with one cron node "c" wired to the sink, on a fake clock.
type rig struct {
	t     *testing.T
	f     *moduletest.Flow
	clock *fakeClock
	// timers is how many timers step waits for: 1 while a leader runs the
	// cron, else 0.
	timers int
}

func newRig(t *testing.T, settings map[string]any) *rig {
	t.Helper()
	clock := newFakeClock(t0)
	f := moduletest.New(t, &Component{clock: clock})
	f.Add("c", ComponentName, settings, map[string]string{"out": "sink.in"})
	return &rig{t: t, f: f, clock: clock}
}

// fired returns the scheduled times the sink got, in order.
func (r *rig) fired() []time.Time {
	var out []time.Time
	for _, m := range r.f.Sink.Got() {
		out = append(out, decodeOut(r.t, m).ScheduledAt)
	}
	return out
}

func decodeOut(t *testing.T, m any) Out {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var o Out
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return o
}

// start presses Start and waits until the leader's timer waits.
func (r *rig) start() {
	r.t.Helper()
	if res := r.f.Send("c._control", Control{Start: true}); res != nil {
		r.t.Fatalf("start: %v", res)
	}
	r.timers = 1
	moduletest.Eventually(r.t, wait, func() bool { return r.clock.Waiting() == 1 }, "the leader's timer waiting")
}

// lead starts or ends this replica's term and waits for the timer to follow.
func (r *rig) lead(on bool) {
	r.t.Helper()
	if on {
		r.f.Leader.Start()
	} else {
		r.f.Leader.Stop()
	}
	want := 0
	if on && r.f.Status.Metadata("c", RunningKey) == "true" {
		want = 1
	}
	moduletest.Eventually(r.t, wait, func() bool { return r.clock.Waiting() == want }, "the timer following the leadership")
	r.timers = want
}

// step sets the clock to now and waits until the sink has got want
// firings in all and, when leading, the timer waits again.
func (r *rig) step(now time.Time, want int) {
	r.t.Helper()
	r.clock.Set(now)
	moduletest.Eventually(r.t, wait, func() bool {
		return len(r.f.Sink.Got()) == want && r.clock.Waiting() == r.timers
	}, "firings settled")
}

func (r *rig) want(times ...time.Time) {
	r.t.Helper()
	got := r.fired()
	if len(got) != len(times) {
		r.t.Fatalf("fired %v, want %v", got, times)
	}
	for i := range got {
		if !got[i].Equal(times[i]) {
			r.t.Fatalf("fired %v, want %v", got, times)
		}
	}
}

// controlRunning is what the published _control schema's default says.
func controlRunning(t *testing.T, f *moduletest.Flow, node string) bool {
	t.Helper()
	for _, p := range f.Ports(node) {
		if p.Name != v1alpha1.ControlPort {
			continue
		}
		var s struct {
			Default struct {
				Running bool `json:"running"`
			} `json:"default"`
		}
		if err := json.Unmarshal(p.Schema.Raw, &s); err != nil {
			t.Fatal(err)
		}
		return s.Default.Running
	}
	t.Fatalf("node %s has no control port", node)
	return false
}

func TestStartFireStop(t *testing.T) {
	r := newRig(t, map[string]any{"schedule": "* * * * * *", "context": map[string]any{"job": "report"}})
	if controlRunning(t, r.f, "c") {
		t.Fatal("a new cron shows running")
	}
	r.step(at(3), 0) // not started: nothing fires
	r.start()
	if got := r.f.Status.Metadata("c", RunningKey); got != "true" {
		t.Fatalf("running %q after start", got)
	}
	moduletest.Eventually(t, wait, func() bool { return controlRunning(t, r.f, "c") }, "the control port showing running")
	r.clock.Set(at(3).Add(250 * time.Millisecond))
	r.step(at(4), 1)
	r.step(at(5).Add(900*time.Millisecond), 2)
	r.want(at(4), at(5))

	o := decodeOut(t, r.f.Sink.Got()[1])
	if !o.FiredAt.Equal(at(5).Add(900*time.Millisecond)) || o.Context.(map[string]any)["job"] != "report" {
		t.Errorf("out %+v", o)
	}
	if got := r.f.Status.Metadata("c", ScheduledKey); got != "2026-01-05T10:00:05Z" {
		t.Errorf("recorded %q", got)
	}

	if res := r.f.Send("c._control", Control{Stop: true}); res != nil {
		t.Fatalf("stop: %v", res)
	}
	r.timers = 0
	moduletest.Eventually(t, wait, func() bool { return r.clock.Waiting() == 0 }, "the timer stopped")
	r.step(at(9), 2)
	if got := r.f.Status.Metadata("c", RunningKey); got != "false" {
		t.Errorf("running %q after stop", got)
	}
	moduletest.Eventually(t, wait, func() bool { return !controlRunning(t, r.f, "c") }, "the control port showing stopped")

	// Started again, it fires what falls due after the new start, not what
	// it missed while stopped.
	r.start()
	r.step(at(9).Add(100*time.Millisecond), 2)
	r.step(at(10), 3)
	r.want(at(4), at(5), at(10))
	// A control with neither start nor stop does nothing.
	if res := r.f.Send("c._control", map[string]any{}); res != nil {
		t.Fatalf("empty control: %v", res)
	}
	r.step(at(11), 4)
}

func TestReadersNeverFire(t *testing.T) {
	r := newRig(t, map[string]any{"schedule": "* * * * * *"})
	r.f.Leader.Stop()
	r.f.Send("c._control", Control{Start: true})
	r.step(at(5), 0)
	if r.clock.Waiting() != 0 || r.f.Status.Writes() != 0 {
		t.Fatalf("a reader armed %d timers and wrote status %d times", r.clock.Waiting(), r.f.Status.Writes())
	}
}

// TestLeaderLossStopsTheTimer: the timer stops the moment the term ends,
// and a reader fires nothing however long it waits.
func TestLeaderLossStopsTheTimer(t *testing.T) {
	r := newRig(t, map[string]any{"schedule": "* * * * * *"})
	r.start()
	r.step(at(1), 1)
	r.lead(false) // the timer stops with the term
	writes := r.f.Status.Writes()
	r.step(at(30), 1)
	if r.f.Status.Writes() != writes {
		t.Errorf("a former leader wrote status")
	}
}

// TestCatchUp: a new leader fires the latest time missed since the last
// recorded one, once (latest), or none of them (none); then the schedule
// goes on.
func TestCatchUp(t *testing.T) {
	for _, mode := range []string{CatchUpLatest, CatchUpNone, ""} {
		t.Run("mode="+mode, func(t *testing.T) {
			settings := map[string]any{"schedule": "* * * * * *"}
			if mode != "" {
				settings["catchUp"] = mode
			}
			r := newRig(t, settings)
			r.start()
			r.step(at(1), 1)
			r.step(at(2), 2)
			r.lead(false) // no replica leads from here...
			r.step(at(7).Add(500*time.Millisecond), 2)
			r.lead(true) // ...to here
			if mode == CatchUpNone {
				r.step(at(7).Add(500*time.Millisecond), 2)
				r.step(at(8), 3)
				r.want(at(1), at(2), at(8))
			} else {
				r.step(at(7).Add(500*time.Millisecond), 3)
				r.step(at(8), 4)
				r.want(at(1), at(2), at(7), at(8))
			}
			// The same leader again, nothing missed: nothing is fired twice.
			r.lead(false)
			r.lead(true)
			n := len(r.f.Sink.Got())
			r.step(at(8).Add(600*time.Millisecond), n)
		})
	}
}

// TestNeverFiresARecordedTimeAgain: a leader whose own copy of the
// metadata is stale still never fires a time recorded since: the record is
// made against the stored status, and refused there.
func TestNeverFiresARecordedTimeAgain(t *testing.T) {
	r := newRig(t, map[string]any{"schedule": "* * * * * *"})
	r.start()
	r.step(at(1), 1)
	r.step(at(2).Add(400*time.Millisecond), 2)
	stored := r.f.Status.Node("c")

	r.lead(false)
	// The instance hears of an older status (a lagging watch): 10:00:01.
	stale := node(t, map[string]any{"schedule": "* * * * * *"})
	stale.Status = *stored.DeepCopy()
	stale.Status.Metadata[ScheduledKey] = "2026-01-05T10:00:01Z"
	if p := r.f.Apply(stale); len(p) > 0 {
		t.Fatal(p)
	}
	r.lead(true)
	r.want(at(1), at(2)) // 10:00:02 was due and not after 10:00:01 as the instance saw it, but is recorded
	r.step(at(3), 3)
	r.want(at(1), at(2), at(3))
}

// recorder is a sink that notes, as each firing arrives, what the status
// records: the record must be there before the firing.
type recorder struct {
	status atomic.Pointer[moduletest.Status]
	mu     sync.Mutex
	seen   []string // "<scheduledAt> recorded <metadata>"
}

func (r *recorder) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "recorder"} }
func (r *recorder) Instance() module.Component    { return r }
func (r *recorder) Ports() []module.Port          { return []module.Port{{Name: "in", Configuration: Out{}}} }
func (r *recorder) Handle(_ context.Context, _ module.Handler, port string, msg any) any {
	if port != "in" {
		return nil
	}
	o := msg.(Out)
	r.mu.Lock()
	r.seen = append(r.seen, formatTime(o.ScheduledAt)+" recorded "+r.status.Load().Metadata("c", ScheduledKey))
	r.mu.Unlock()
	return nil
}

func TestRecordsBeforeItFires(t *testing.T) {
	clock := newFakeClock(t0)
	rec := &recorder{}
	f := moduletest.New(t, &Component{clock: clock}, rec)
	rec.status.Store(f.Status)
	f.Add("rec", "recorder", nil, nil)
	f.Add("c", ComponentName, map[string]any{"schedule": "* * * * * *"}, map[string]string{"out": "rec.in"})
	f.Send("c._control", Control{Start: true})
	for sec := 1; sec <= 3; sec++ {
		moduletest.Eventually(t, wait, func() bool { return clock.Waiting() == 1 }, "the timer waiting")
		clock.Set(at(sec))
	}
	moduletest.Eventually(t, wait, func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.seen) == 3 }, "three firings")
	for i, s := range rec.seen {
		want := formatTime(at(i+1)) + " recorded " + formatTime(at(i+1))
		if s != want {
			t.Errorf("firing %d: %s, want %s", i, s, want)
		}
	}
}

// flaky wraps the cron and fails its status writes while told to, or lets
// them do nothing and report nothing, as a write on a replica that has just
// stopped leading does.
type flaky struct {
	*Component
	fail, swallow *atomic.Int32
}

func (f *flaky) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "flaky-cron"} }
func (f *flaky) Instance() module.Component {
	return &flaky{Component: f.Component.Instance().(*Component), fail: f.fail, swallow: f.swallow}
}
func (f *flaky) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	wrapped := func(ctx context.Context, port string, data any) any {
		if _, write := data.(func(*v1alpha1.TinyNode) error); write && port == v1alpha1.ReconcilePort {
			if f.fail.Load() > 0 {
				f.fail.Add(-1)
				return errors.New("the API server answered 503")
			}
			if f.swallow.Load() > 0 {
				f.swallow.Add(-1)
				return nil
			}
		}
		return output(ctx, port, data)
	}
	return f.Component.Handle(ctx, wrapped, port, msg)
}

// TestFiresOnlyWhatItRecorded: a record that fails, or does nothing, fires
// nothing; a failed one is tried again while it is the latest time due.
func TestFiresOnlyWhatItRecorded(t *testing.T) {
	clock := newFakeClock(t0)
	var fail, swallow atomic.Int32
	f := moduletest.New(t, &flaky{Component: &Component{clock: clock}, fail: &fail, swallow: &swallow})
	f.Add("c", "flaky-cron", map[string]any{"schedule": "* * * * * *"}, map[string]string{"out": "sink.in"})
	f.Send("c._control", Control{Start: true})
	moduletest.Eventually(t, wait, func() bool { return clock.Waiting() == 1 }, "the timer waiting")

	// 10:00:01: the write reports nothing and changes nothing: not fired.
	swallow.Store(1)
	clock.Set(at(1))
	moduletest.Eventually(t, wait, func() bool { return swallow.Load() == 0 && clock.Waiting() == 1 }, "the swallowed write")
	if n := len(f.Sink.Got()); n != 0 {
		t.Fatalf("fired %d times without a record", n)
	}

	// 10:00:02: two writes fail; the third, after backoff, lands and fires.
	fail.Store(2)
	clock.Set(at(2))
	moduletest.Eventually(t, wait, func() bool { return fail.Load() == 1 && clock.Waiting() == 1 }, "the first failure")
	if n := len(f.Sink.Got()); n != 0 {
		t.Fatalf("fired %d times after a failed record", n)
	}
	clock.Set(at(2).Add(100 * time.Millisecond))
	moduletest.Eventually(t, wait, func() bool { return fail.Load() == 0 && clock.Waiting() == 1 }, "the second failure")
	clock.Set(at(2).Add(300 * time.Millisecond))
	moduletest.Eventually(t, wait, func() bool { return len(f.Sink.Got()) == 1 }, "the retried record fires")
	if o := decodeOut(t, f.Sink.Got()[0]); !o.ScheduledAt.Equal(at(2)) {
		t.Fatalf("fired %v", o.ScheduledAt)
	}

	// A failure that lasts past the next time gives way to it.
	moduletest.Eventually(t, wait, func() bool { return clock.Waiting() == 1 }, "the timer waiting")
	fail.Store(1000)
	clock.Set(at(3))
	moduletest.Eventually(t, wait, func() bool { return fail.Load() < 1000 && clock.Waiting() == 1 }, "a failure")
	fail.Store(0)
	clock.Set(at(4))
	moduletest.Eventually(t, wait, func() bool { return len(f.Sink.Got()) == 2 }, "the next time fires")
	if o := decodeOut(t, f.Sink.Got()[1]); !o.ScheduledAt.Equal(at(4)) {
		t.Fatalf("fired %v, want 10:00:04 (10:00:03 never recorded)", o.ScheduledAt)
	}
}

func TestEveryCountsFromTheStart(t *testing.T) {
	r := newRig(t, map[string]any{"schedule": "@every 2s"})
	r.start() // at 10:00:00.25
	r.step(at(1), 0)
	r.step(at(2).Add(250*time.Millisecond), 1)
	r.step(at(4), 2)
	r.want(at(2), at(4))
}

// TestNewScheduleCountsFromNow: a schedule changed while running fires no
// time of its own that fell before the change.
func TestNewScheduleCountsFromNow(t *testing.T) {
	r := newRig(t, map[string]any{"schedule": "@every 10s"})
	r.start()
	r.step(at(5).Add(500*time.Millisecond), 0)
	if p := r.f.Apply(node(t, map[string]any{"schedule": "* * * * * *"})); len(p) > 0 {
		t.Fatal(p)
	}
	moduletest.Eventually(t, wait, func() bool { return r.f.Status.Metadata("c", SinceKey) == "2026-01-05T10:00:05.5Z" }, "the new start recorded")
	r.step(at(6), 1)
	r.want(at(6))
	// The next leader counts from the change too.
	r.lead(false)
	r.lead(true)
	r.step(at(6).Add(time.Millisecond), 1)
}

func TestTimezone(t *testing.T) {
	clock := newFakeClock(time.Date(2026, 1, 5, 7, 59, 59, 0, time.UTC))
	f := moduletest.New(t, &Component{clock: clock})
	f.Add("c", ComponentName, map[string]any{"schedule": "0 9 * * *", "timezone": "Europe/Paris"}, map[string]string{"out": "sink.in"})
	f.Send("c._control", Control{Start: true})
	moduletest.Eventually(t, wait, func() bool { return clock.Waiting() == 1 }, "the timer waiting")
	clock.Set(time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC))
	moduletest.Eventually(t, wait, func() bool { return len(f.Sink.Got()) == 1 }, "09:00 in Paris")
	raw, _ := json.Marshal(f.Sink.Got()[0])
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if out["scheduledAt"] != "2026-01-05T09:00:00+01:00" {
		t.Errorf("scheduledAt %v", out["scheduledAt"])
	}
}

func TestInvalidSettings(t *testing.T) {
	f := moduletest.New(t, &Component{})
	for _, s := range []map[string]any{
		{"schedule": "every now and then"},
		{"schedule": "61 * * * *"},
		{"schedule": "* * * * * * *"},
		{"schedule": "@fortnightly"},
		{"schedule": "@every soon"},
		{"schedule": "0 0 30 2 *"}, // February 30th never comes
		{"schedule": "CRON_TZ=Europe/Paris 0 9 * * *"},
		{"schedule": "* * * * *", "timezone": "Mars/Olympus_Mons"},
		{"schedule": "* * * * *", "timezone": "Local"},
	} {
		problems := f.Problems("bad", ComponentName, s)
		if len(problems) != 1 || problems[0].Reason != moduletest.ReasonSettingsRejected {
			t.Errorf("settings %v: %+v, want %s", s, problems, moduletest.ReasonSettingsRejected)
		}
	}
	if problems := f.Problems("bad", ComponentName, map[string]any{"catchUp": "sometimes"}); len(problems) != 1 {
		t.Errorf("catchUp sometimes: %+v", problems)
	}
	for _, s := range []map[string]any{
		{"schedule": "*/5 * * * *"},
		{"schedule": "30 */5 * * * *"},
		{"schedule": "0 9 * * MON-FRI", "timezone": "America/New_York"},
		{"schedule": "@hourly"},
		{"schedule": "@every 1h30m", "catchUp": "none"},
		{},
	} {
		if problems := f.Problems("good", ComponentName, s); len(problems) > 0 {
			t.Errorf("settings %v: %+v", s, problems)
		}
	}
}

// TestRejectedSettingsKeepTheLastGood: the node keeps firing on the
// schedule it had.
func TestRejectedSettingsKeepTheLastGood(t *testing.T) {
	r := newRig(t, map[string]any{"schedule": "* * * * * *"})
	r.start()
	if p := r.f.Apply(node(t, map[string]any{"schedule": "nonsense"})); len(p) != 1 || p[0].Reason != moduletest.ReasonSettingsRejected {
		t.Fatalf("problems %+v", p)
	}
	r.step(at(1), 1)
}

func TestLatestDue(t *testing.T) {
	mustRead := func(spec string) plan {
		p, err := read(Settings{Schedule: spec})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	day := func(d, h, m, s int) time.Time { return time.Date(2026, 1, d, h, m, s, 0, time.UTC) }
	for _, c := range []struct {
		spec       string
		after, now time.Time
		want       time.Time // zero: none
	}{
		{"* * * * * *", day(5, 10, 0, 0), day(5, 10, 0, 0), time.Time{}},
		{"* * * * * *", day(5, 10, 0, 0), day(5, 10, 0, 0).Add(999 * time.Millisecond), time.Time{}},
		{"* * * * * *", day(5, 10, 0, 0), day(5, 10, 0, 1), day(5, 10, 0, 1)},
		{"* * * * * *", day(5, 10, 0, 0), day(5, 10, 0, 7).Add(500 * time.Millisecond), day(5, 10, 0, 7)},
		{"@hourly", day(5, 10, 0, 0), day(5, 10, 59, 59), time.Time{}},
		{"@hourly", day(5, 10, 0, 0), day(5, 13, 20, 0), day(5, 13, 0, 0)},
		{"0 9 * * *", day(1, 9, 0, 0), day(5, 8, 0, 0), day(4, 9, 0, 0)},
		{"0 0 1 1 *", time.Date(2019, 6, 1, 0, 0, 0, 0, time.UTC), day(5, 0, 0, 0), day(1, 0, 0, 0)},
		{"0 0 1 1 *", time.Time{}, day(5, 0, 0, 0), day(1, 0, 0, 0)},
		{"@every 10s", day(5, 10, 0, 0).Add(250 * time.Millisecond), day(5, 10, 0, 9), time.Time{}},
		{"@every 10s", day(5, 10, 0, 0).Add(250 * time.Millisecond), day(5, 10, 0, 35), day(5, 10, 0, 30)},
	} {
		got, ok := latestDue(mustRead(c.spec).schedule, c.after, c.now)
		if ok != !c.want.IsZero() || ok && !got.Equal(c.want) {
			t.Errorf("latestDue(%s, %s, %s) = %s, %v; want %s", c.spec, c.after, c.now, got, ok, c.want)
		}
	}
}

// node is the TinyNode of "c" with settings, wired to the sink.
func node(t *testing.T, settings map[string]any) *v1alpha1.TinyNode {
	t.Helper()
	raw, err := json.Marshal(settings)
	if err != nil {
		t.Fatal(err)
	}
	return &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: "c"},
		Spec: v1alpha1.TinyNodeSpec{Module: moduletest.ModuleName, Component: ComponentName,
			Ports: []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: raw}}},
			Edges: []v1alpha1.TinyNodeEdge{{ID: "c-out", Port: "out", To: "sink.in"}}},
	}
}
