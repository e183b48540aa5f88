// Package resources is the module.ResourceManager that components with a
// _client port receive: Services and Ingresses for a node, written only by
// the leader, owned by the TinyNode and removed with it.
package resources

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/apicall"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/module"
)

// Labels on what a node's manager creates.
const (
	// ModuleLabel selects a module's pods (the chart sets it on them).
	ModuleLabel = "tinysystems.io/module-name"
	// NodeLabel names the node a Service or Ingress belongs to.
	NodeLabel = "tinysystems.io/node-name"
	// PortLabel is the exposed port.
	PortLabel = "tinysystems.io/exposed-port"
)

// Manager is one node's module.ResourceManager.
type Manager struct {
	// Client writes; Reader reads, uncached, so that a new leader sees what
	// the last one made.
	Client client.Client
	Read   client.Reader
	// Namespace, Module and Node say whose resources these are.
	Namespace, Module, Node string
	// Leader gates every write: each carries the term it was confirmed in.
	Leader leader.Source
	// IngressClass, if set, is the Ingresses' ingressClassName.
	IngressClass string
	// RequestTimeout bounds each API call (a read, a write, or a
	// create-or-update's read and write), so that a hung API server cannot
	// hold a component's leader-only work for its whole term.
	// apicall.DefaultTimeout (30 s) if zero.
	RequestTimeout time.Duration
}

var _ module.ResourceManager = (*Manager)(nil)

// Reader reads objects of the module's namespace.
func (m *Manager) Reader() client.Reader { return m.Read }

// Name is the Service's and the Ingress's name for a node's port:
// "<node>-<port>" when that is a valid Service name (a DNS-1035 label), else
// a shortened, cleaned form of the node's name with a hash of it.
func Name(node string, port int) string {
	name := node + "-" + strconv.Itoa(port)
	if len(validation.IsDNS1035Label(name)) == 0 {
		return name
	}
	clean := strings.Trim(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(node)), "-")
	h := fnv.New32a()
	_, _ = h.Write([]byte(node))
	return fmt.Sprintf("n-%.40s-%08x-%d", clean, h.Sum32(), port)
}

func (m *Manager) labels(port int) map[string]string {
	return map[string]string{ModuleLabel: m.Module, NodeLabel: m.Node, PortLabel: strconv.Itoa(port)}
}

// owner returns the TinyNode as an owner reference: in a cluster the garbage
// collector removes what it owns if the finalizer could not.
func (m *Manager) owner(ctx context.Context) (metav1.OwnerReference, error) {
	n := &v1alpha1.TinyNode{}
	if err := m.bounded(ctx, func(ctx context.Context) error {
		return m.Read.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Node}, n)
	}); err != nil {
		return metav1.OwnerReference{}, fmt.Errorf("node %s: %w", m.Node, err)
	}
	return metav1.OwnerReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "TinyNode", Name: n.Name, UID: n.UID}, nil
}

// bounded runs one API call bounded by RequestTimeout: a hung API server
// must not hold a component's leader-only work, which may last a whole term.
func (m *Manager) bounded(ctx context.Context, call func(context.Context) error) error {
	return apicall.Bounded(ctx, m.RequestTimeout, call)
}

// authorize confirms leadership for action and returns ctx carrying the term,
// for the Fence to check again as each write leaves.
func (m *Manager) authorize(ctx context.Context, action string) (context.Context, error) {
	t := m.Leader.Current()
	if !t.Confirm(action + " " + m.Node) {
		return ctx, module.ErrNotLeader
	}
	return leader.WithTerm(ctx, t), nil
}

// ExposePort creates or updates the Service and, with hostnames, the Ingress.
func (m *Manager) ExposePort(ctx context.Context, port int, hostnames ...string) error {
	if port < 1 || port > 65535 {
		return module.Permanent(fmt.Errorf("expose port %d: not a port", port))
	}
	ctx, err := m.authorize(ctx, "expose")
	if err != nil {
		return err
	}
	owner, err := m.owner(ctx)
	if err != nil {
		return err
	}
	name := Name(m.Node, port)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: m.Namespace}}
	if err := m.createOrUpdate(ctx, svc, func() {
		m.own(&svc.ObjectMeta, owner, port)
		svc.Spec.Selector = map[string]string{ModuleLabel: m.Module}
		svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: int32(port), TargetPort: intstr.FromInt32(int32(port)), Protocol: corev1.ProtocolTCP}}
	}); err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: m.Namespace}}
	if len(hostnames) == 0 {
		return m.delete(ctx, "Ingress", ing)
	}
	prefix := networkingv1.PathTypePrefix
	if err := m.createOrUpdate(ctx, ing, func() {
		m.own(&ing.ObjectMeta, owner, port)
		if m.IngressClass != "" {
			ing.Spec.IngressClassName = &m.IngressClass
		}
		ing.Spec.Rules = nil
		for _, h := range hostnames {
			ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{Host: h, IngressRuleValue: networkingv1.IngressRuleValue{
				HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &prefix,
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name, Port: networkingv1.ServiceBackendPort{Number: int32(port)}}}}}},
			}})
		}
	}); err != nil {
		return fmt.Errorf("ingress %s: %w", name, err)
	}
	return nil
}

// DisclosePort deletes the port's Ingress and Service.
func (m *Manager) DisclosePort(ctx context.Context, port int) error {
	ctx, err := m.authorize(ctx, "disclose")
	if err != nil {
		return err
	}
	name := Name(m.Node, port)
	if err := m.delete(ctx, "Ingress", &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: m.Namespace}}); err != nil {
		return err
	}
	return m.delete(ctx, "Service", &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: m.Namespace}})
}

// own labels the object and makes the node its owner, keeping other owners.
func (m *Manager) own(meta *metav1.ObjectMeta, owner metav1.OwnerReference, port int) {
	if meta.Labels == nil {
		meta.Labels = map[string]string{}
	}
	for k, v := range m.labels(port) {
		meta.Labels[k] = v
	}
	for i, o := range meta.OwnerReferences {
		if o.UID == owner.UID || (o.Kind == owner.Kind && o.Name == owner.Name) {
			meta.OwnerReferences[i] = owner
			return
		}
	}
	meta.OwnerReferences = append(meta.OwnerReferences, owner)
}

// createOrUpdate reads obj uncached, applies mutate and writes it only if it
// changed: a new leader finds and adopts what the last one made.
// A call given up at its bound may still fill obj in later: on an error the
// caller must leave obj alone.
func (m *Manager) createOrUpdate(ctx context.Context, obj client.Object, mutate func()) error {
	return m.bounded(ctx, func(ctx context.Context) error {
		_, err := controllerutil.CreateOrUpdate(ctx, readThrough{m.Client, m.Read}, obj, func() error { mutate(); return nil })
		return err
	})
}

func (m *Manager) delete(ctx context.Context, kind string, obj client.Object) error {
	if err := m.bounded(ctx, func(ctx context.Context) error { return m.Client.Delete(ctx, obj) }); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s %s: %w", kind, obj.GetName(), err)
	}
	return nil
}

// Cleanup deletes every Service and Ingress of the node: the leader calls it
// before it releases a deleted node's finalizer.
func Cleanup(ctx context.Context, c client.Client, r client.Reader, namespace, node string) error {
	sel := client.MatchingLabels{NodeLabel: node}
	var ings networkingv1.IngressList
	if err := r.List(ctx, &ings, client.InNamespace(namespace), sel); err != nil {
		return err
	}
	for i := range ings.Items {
		if err := c.Delete(ctx, &ings.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	var svcs corev1.ServiceList
	if err := r.List(ctx, &svcs, client.InNamespace(namespace), sel); err != nil {
		return err
	}
	for i := range svcs.Items {
		if err := c.Delete(ctx, &svcs.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// readThrough writes with the client and reads with the uncached reader.
type readThrough struct {
	client.Client
	r client.Reader
}

func (c readThrough) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	return c.r.Get(ctx, key, obj, opts...)
}
