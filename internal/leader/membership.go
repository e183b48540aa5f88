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
)

// Membership keeps one replica's own Lease, as kube-apiserver keeps its
// identity leases: it says the replica is alive and where to reach it.
type Membership struct {
	Client    kubernetes.Interface
	Namespace string
	Module    string
	Identity  string
	Addr      string
	// Duration is written into the Lease; it is renewed every third of it.
	Duration time.Duration
	Log      logr.Logger
}

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

// Run keeps the Lease until ctx ends, then deletes it.
func (m *Membership) Run(ctx context.Context) {
	leases := m.Client.CoordinationV1().Leases(m.Namespace)
	name := MemberLeaseName(m.Module, m.Identity)
	secs := int32(max(m.Duration/time.Second, 1))
	for {
		now := metav1.NowMicro()
		lease, err := leases.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = leases.Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: m.Namespace,
					Labels:      map[string]string{ModuleLabel: m.Module, RoleLabel: "member"},
					Annotations: map[string]string{AddressAnnotation: m.Addr}},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: &m.Identity, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
			}, metav1.CreateOptions{})
		case err == nil:
			lease.Spec.RenewTime = &now
			lease.Spec.HolderIdentity = &m.Identity
			lease.Spec.LeaseDurationSeconds = &secs
			if lease.Annotations == nil {
				lease.Annotations = map[string]string{}
			}
			lease.Annotations[AddressAnnotation] = m.Addr
			_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
		}
		if err != nil && ctx.Err() == nil && m.Log.GetSink() != nil {
			m.Log.V(1).Info("membership lease", "error", err.Error())
		}
		t := time.NewTimer(max(m.Duration/3, 100*time.Millisecond))
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
