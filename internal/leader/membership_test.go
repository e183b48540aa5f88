package leader_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
)

// TestMembershipCollectsExpiredLeases: a replica deletes the membership
// Leases of its module's replicas that expired long ago, and keeps those
// expired only a little, other modules' and other kinds of Leases.
func TestMembershipCollectsExpiredLeases(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, time.Minute)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	leases := cs.CoordinationV1().Leases(ns)
	lease := func(name, module, role string, renewed time.Duration) {
		t.Helper()
		holder, secs, at := name, int32(10), metav1.NewMicroTime(time.Now().Add(-renewed))
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{leader.ModuleLabel: module, leader.RoleLabel: role},
				Annotations: map[string]string{leader.AddressAnnotation: "10.0.0.1:8483"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &at},
		}
		if _, err := leases.Create(ctx, l, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	lease("gone", "m", "member", time.Hour)            // expired for long: collected
	lease("late", "m", "member", 30*time.Second)       // expired 20 s ago only: kept
	lease("alive", "m", "member", 0)                   // renewed now: kept
	lease("other-module", "n", "member", time.Hour)    // another module's: kept
	lease("not-a-member", "m", "something", time.Hour) // not a membership Lease: kept

	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&leader.Membership{Client: cs, Namespace: ns, Module: "m", Identity: "me", Addr: "10.0.0.2:8483", Duration: 2 * time.Second}).Run(mctx)
	}()
	defer func() { stop(); <-done }()

	own := leader.MemberLeaseName("m", "me")
	controlplanetest.Eventually(t, 20*time.Second, func() error {
		if _, err := leases.Get(ctx, own, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("own lease: %w", err)
		}
		if _, err := leases.Get(ctx, "gone", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the long-expired lease is still there (%v)", err)
		}
		return nil
	})
	for _, name := range []string{"late", "alive", "other-module", "not-a-member", own} {
		if _, err := leases.Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("lease %s: %v", name, err)
		}
	}
}

// TestMemberExpired: the rule that decides which membership Leases may go.
func TestMemberExpired(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	secs := int32(15)
	at := func(ago time.Duration) *metav1.MicroTime { m := metav1.NewMicroTime(now.Add(-ago)); return &m }
	cases := []struct {
		name    string
		renewed *metav1.MicroTime
		secs    *int32
		margin  time.Duration
		want    bool
	}{
		{"live", at(time.Second), &secs, 0, false},
		{"just expired, no margin", at(16 * time.Second), &secs, 0, true},
		{"expired within the margin", at(time.Minute), &secs, 5 * time.Minute, false},
		{"expired past the margin", at(6 * time.Minute), &secs, 5 * time.Minute, true},
		{"renewed in the future (clock skew)", at(-time.Minute), &secs, 0, false},
		{"no renew time", nil, &secs, 0, false},
		{"no duration", at(time.Hour), nil, 0, false},
	}
	for _, tc := range cases {
		l := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: tc.renewed, LeaseDurationSeconds: tc.secs}}
		if got := leader.MemberExpired(l, now, tc.margin); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
