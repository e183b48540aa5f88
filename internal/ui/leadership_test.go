package ui

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
)

// renewing keeps a module's leader and member Leases renewed by r-1 every
// 300 ms, with renew times off the ui's clock by skew, until stop is
// closed.
func renewing(t *testing.T, ctx context.Context, k client.Client, ns, module string, skew time.Duration, stop <-chan struct{}) {
	t.Helper()
	at := func() *metav1.MicroTime { return &metav1.MicroTime{Time: time.Now().Add(skew)} }
	leaderLease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: module + "-leader", Namespace: ns},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("r-1"), LeaseDurationSeconds: ptr.To[int32](3), AcquireTime: at(), RenewTime: at()}}
	member := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: leader.MemberLeaseName(module, "r-1"), Namespace: ns,
		Labels: map[string]string{leader.RoleLabel: "member", leader.ModuleLabel: module}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("r-1"), LeaseDurationSeconds: ptr.To[int32](3), RenewTime: at()}}
	for _, l := range []*coordinationv1.Lease{leaderLease, member} {
		if err := k.Create(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, l := range []*coordinationv1.Lease{leaderLease, member} {
				l.Spec.RenewTime = at()
				_ = k.Update(ctx, l)
			}
		}
	}()
}

func moduleIs(module string, ok func(ModuleLeadership) bool) func([]byte) bool {
	return func(b []byte) bool {
		var l Leadership
		if json.Unmarshal(b, &l) != nil {
			return false
		}
		m, found := l.Modules[module]
		return found && ok(m)
	}
}

// Replicas write renew times on their own clocks. A Lease is judged as
// the runtime judges it, by when this server saw it change.

// TestLeaderBehindStillLeads: a leader whose clock is a minute behind
// this server's leads, and is alive, while it renews.
func TestLeaderBehindStillLeads(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, time.Minute)
	_, api := startServer(t, env.Config, ns)
	events := openEvents(t, ctx, api.url)
	events.next(t, 30*time.Second, "snapshot", nil)
	stop := make(chan struct{})
	defer close(stop)
	renewing(t, ctx, env.Client, ns, "behind", -time.Minute, stop)
	events.next(t, 10*time.Second, "leadership", moduleIs("behind", func(m ModuleLeadership) bool {
		return m.Leader == "r-1" && len(m.Replicas) == 1 && m.Replicas[0].Alive
	}))
}

// TestLeaderAheadStopsLeading: a leader whose clock is a minute ahead of
// this server's leads no more once it has not renewed for its Lease's
// duration (3 s), not a minute later.
func TestLeaderAheadStopsLeading(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, time.Minute)
	_, api := startServer(t, env.Config, ns)
	events := openEvents(t, ctx, api.url)
	events.next(t, 30*time.Second, "snapshot", nil)
	stop := make(chan struct{})
	renewing(t, ctx, env.Client, ns, "ahead", time.Minute, stop)
	events.next(t, 10*time.Second, "leadership", moduleIs("ahead", func(m ModuleLeadership) bool { return m.Leader == "r-1" }))
	close(stop)
	events.next(t, 8*time.Second, "leadership", moduleIs("ahead", func(m ModuleLeadership) bool {
		return m.Leader == "" && m.Expired && len(m.Replicas) == 1 && !m.Replicas[0].Alive
	}))
}

// TestLeaseValidWhenOnlyListed: a Lease only listed when the watches
// started, whose last change this server did not see, holds only if its
// renew time also says so: a leader dead for an hour is not shown leading
// for one more Lease duration after the server starts.
func TestLeaseValidWhenOnlyListed(t *testing.T) {
	now := time.Now()
	w := &watcher{leases: map[string]leaseSeen{}}
	lease := func(name, version string, renewed time.Time) coordinationv1.Lease {
		return coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: version},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("r"), LeaseDurationSeconds: ptr.To[int32](15), RenewTime: &metav1.MicroTime{Time: renewed}}}
	}
	dead, fresh, renewing := lease("dead", "1", now.Add(-time.Hour)), lease("fresh", "2", now.Add(-time.Second)), lease("renewing", "3", now.Add(-time.Hour))
	w.seeLease(&dead, false, true, now)
	w.seeLease(&fresh, false, true, now)
	w.seeLease(&renewing, false, false, now) // seen to change, whatever its clock says
	if w.leaseValid(dead, now) || !w.leaseValid(fresh, now) || !w.leaseValid(renewing, now) {
		t.Errorf("listed and dead: %v; listed and fresh: %v; seen to change: %v", w.leaseValid(dead, now), w.leaseValid(fresh, now), w.leaseValid(renewing, now))
	}
	if later := now.Add(16 * time.Second); w.leaseValid(fresh, later) || w.leaseValid(renewing, later) {
		t.Error("Leases not seen to change for longer than their duration still hold")
	}
	if unseen := lease("unseen", "4", now.Add(-time.Hour)); w.leaseValid(unseen, now) {
		t.Error("a Lease the handlers have not seen yet holds despite its renew time")
	}
}
