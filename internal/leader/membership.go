package leader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// Labels and annotations of membership Leases.
const (
	// ModuleLabel names the module a membership Lease belongs to.
	ModuleLabel = "tinysystems.io/module-name"
	// RoleLabel is "member" on membership Leases.
	RoleLabel = "tinysystems.io/lease-role"
	// AddressAnnotation holds the replica's gRPC address.
	AddressAnnotation = "tinysystems.io/grpc-address"
	// MetricsAnnotation holds the replica's metrics address, which also
	// serves its per-node health; absent when it has none to publish.
	MetricsAnnotation = "tinysystems.io/metrics-address"
)

// Membership keeps one replica's own Lease, as kube-apiserver keeps its
// identity leases: it says the replica is alive and where to reach it.
type Membership struct {
	Client    kubernetes.Interface
	Namespace string
	Module    string
	Identity  string
	Addr      string
	// MetricsAddr, if set, is published with the address.
	MetricsAddr string
	// Duration is written into the Lease; it is renewed every third of it.
	Duration time.Duration
	// GCAfter is how long another replica's membership Lease of the module
	// must have been expired before this replica deletes it: a generous
	// margin over clock skew between replicas and slow renewals. Defaults
	// to DefaultMemberGCAfter.
	GCAfter time.Duration
	Log     logr.Logger
}

// DefaultMemberGCAfter is Membership.GCAfter's default.
const DefaultMemberGCAfter = 5 * time.Minute

var unsafeName = regexp.MustCompile(`[^a-z0-9-]+`)

// MemberLeaseName is the name of a replica's membership Lease.
func MemberLeaseName(module, identity string) string {
	sum := sha256.Sum256([]byte(identity))
	base := strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(identity), "-"), "-")
	name := fmt.Sprintf("%s-member-%s", module, base)
	if len(name) > 240 {
		name = name[:240]
	}
	return strings.Trim(name, "-") + "-" + hex.EncodeToString(sum[:4])
}

// annotations returns a with the replica's addresses set.
func (m *Membership) annotations(a map[string]string) map[string]string {
	if a == nil {
		a = map[string]string{}
	}
	a[AddressAnnotation] = m.Addr
	if m.MetricsAddr != "" {
		a[MetricsAnnotation] = m.MetricsAddr
	} else {
		delete(a, MetricsAnnotation)
	}
	return a
}

// Run keeps the Lease until ctx ends, then deletes it. Along the way it
// deletes the membership Leases of the module's replicas that have been
// expired for longer than GCAfter, so replicas that died leave none behind.
func (m *Membership) Run(ctx context.Context) {
	leases := m.Client.CoordinationV1().Leases(m.Namespace)
	name := MemberLeaseName(m.Module, m.Identity)
	secs := int32(max(m.Duration/time.Second, 1))
	period := max(m.Duration/3, 100*time.Millisecond)
	// No call may outlast the renewal it serves.
	callTimeout := max(period, time.Second)
	gcAfter := m.GCAfter
	if gcAfter <= 0 {
		gcAfter = DefaultMemberGCAfter
	}
	var lastGC time.Time
	for {
		now := metav1.NowMicro()
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		lease, err := leases.Get(cctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = leases.Create(cctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: m.Namespace,
					Labels:      map[string]string{ModuleLabel: m.Module, RoleLabel: "member"},
					Annotations: m.annotations(nil)},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: &m.Identity, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
			}, metav1.CreateOptions{})
		case err == nil:
			lease.Spec.RenewTime = &now
			lease.Spec.HolderIdentity = &m.Identity
			lease.Spec.LeaseDurationSeconds = &secs
			lease.Annotations = m.annotations(lease.Annotations)
			_, err = leases.Update(cctx, lease, metav1.UpdateOptions{})
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			m.logError("membership lease", err)
		}
		if time.Since(lastGC) >= max(gcAfter/5, m.Duration) {
			lastGC = time.Now()
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			m.collect(cctx, name, gcAfter)
			cancel()
		}
		t := time.NewTimer(period)
		select {
		case <-ctx.Done():
			t.Stop()
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = leases.Delete(dctx, name, metav1.DeleteOptions{})
			cancel()
			return
		case <-t.C:
		}
	}
}

// collect deletes the module's membership Leases, other than own, that
// expired more than gcAfter ago. Each delete is conditional on the Lease
// being exactly the one judged (UID and resourceVersion), so a replica that
// renews in the meantime keeps its Lease, and replicas collecting at once do
// not trip over each other.
func (m *Membership) collect(ctx context.Context, own string, gcAfter time.Duration) {
	leases := m.Client.CoordinationV1().Leases(m.Namespace)
	list, err := leases.List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{ModuleLabel: m.Module, RoleLabel: "member"}).String()})
	if err != nil {
		m.logError("list membership leases", err)
		return
	}
	now := time.Now()
	for _, l := range list.Items {
		if l.Name == own || !MemberExpired(&l, now, gcAfter) {
			continue
		}
		uid, rv := l.UID, l.ResourceVersion
		err := leases.Delete(ctx, l.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
		switch {
		case err == nil:
			if m.Log.GetSink() != nil {
				m.Log.Info("deleted the membership lease of a replica gone for long", "lease", l.Name, "renewed", l.Spec.RenewTime)
			}
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Collected by another replica, or renewed since: either way, not ours to delete.
		default:
			m.logError("delete membership lease "+l.Name, err)
		}
	}
}

// MemberExpired says whether membership Lease l had expired more than
// margin before now. A Lease without a renew time or a duration is never
// judged expired: there is nothing to judge it by.
func MemberExpired(l *coordinationv1.Lease, now time.Time, margin time.Duration) bool {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return false
	}
	expiry := l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)
	return now.Sub(expiry) > margin
}

func (m *Membership) logError(msg string, err error) {
	if m.Log.GetSink() != nil {
		m.Log.V(1).Info(msg, "error", err.Error())
	}
}
