package leader_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

var fast = leader.Config{LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 500 * time.Millisecond}

func holderOf(t *testing.T, env *controlplanetest.Env, ns string) *coordinationv1.Lease {
	t.Helper()
	l := &coordinationv1.Lease{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "l"}, l); err != nil {
		return nil
	}
	return l
}

// TestReleaseAfterALateRenewal: the lease changed after the elector last saw
// it (as when a renewal cancelled on our side landed anyway); a graceful stop
// must still release it, not leave it to expire.
func TestReleaseAfterALateRenewal(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	e, err := leader.New(leader.Options{Config: fast, Client: cs, Namespace: ns, Name: "l", Identity: "a",
		OnStartedLeading: func(*leader.Term) { started <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("never led")
	}

	// Someone writes the lease (same holder) behind the elector's back...
	l := holderOf(t, env, ns)
	l.Annotations = map[string]string{"bumped": "yes"}
	if err := env.Client.Update(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	// ...and the elector stops at once.
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	controlplanetest.Eventually(t, 500*time.Millisecond, func() error {
		if l := holderOf(t, env, ns); l == nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "" {
			return fmt.Errorf("lease not released: %+v", l.Spec)
		}
		return nil
	})
}

// TestNewRejectsBadDurations: bad settings fail at construction.
func TestNewRejectsBadDurations(t *testing.T) {
	_, err := leader.New(leader.Options{Config: leader.Config{LeaseDuration: time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 100 * time.Millisecond},
		Client: kubernetes.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1"}), Namespace: "n", Name: "l", Identity: "a"})
	if err == nil {
		t.Fatal("a renew deadline longer than the lease was accepted")
	}
}
