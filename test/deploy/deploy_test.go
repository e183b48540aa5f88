// Package deploy tests what runs tinymod on a cluster: the Dockerfile, the
// Helm chart (linted and rendered by a pinned helm, every object validated by
// the real API server) and its RBAC, by running replicas under nothing else.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/manifest"
	"github.com/tinymod/tinymod/test/e2e/harness"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

const chart = "../../charts/tinymod"

var helmOnce struct {
	sync.Once
	path string
	err  error
	out  []byte
}

// helm returns the pinned helm, built from the Go module proxy on first use
// and cached outside the clone.
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "../../hack/helm/build.sh")
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		helmOnce.path, helmOnce.err, helmOnce.out = strings.TrimSpace(string(out)), err, stderr.Bytes()
	})
	if helmOnce.err != nil {
		t.Fatalf("build helm: %v\n%s", helmOnce.err, helmOnce.out)
	}
	return helmOnce.path
}

// render runs helm template for namespace ns with extra arguments.
func render(t *testing.T, ns string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(helm(t), append([]string{"template", "tinymod", chart, "--namespace", ns}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

func objects(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	objs, err := manifest.Objects(data)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	return nil
}

// dryRun has the API server validate every object: a server-side dry-run
// create, which runs admission and validation and stores nothing.
func dryRun(t *testing.T, c client.Client, ns string, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := controlplanetest.Context(t, time.Minute)
	for _, o := range objs {
		o := o.DeepCopy()
		if o.GetNamespace() == "" && o.GetKind() != "CustomResourceDefinition" {
			o.SetNamespace(ns)
		}
		err := c.Create(ctx, o, client.DryRunAll)
		if o.GetKind() == "CustomResourceDefinition" && apierrors.IsAlreadyExists(err) {
			continue // installed by the test control plane already
		}
		if err != nil {
			t.Errorf("%s %s: the API server refuses it: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

func TestChartCRDsMatchConfig(t *testing.T) {
	want, _ := filepath.Glob("../../config/crd/bases/*.yaml")
	got, _ := filepath.Glob(chart + "/crds/*.yaml")
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("chart has %d CRD files, config/crd/bases %d", len(got), len(want))
	}
	for _, w := range want {
		a, _ := os.ReadFile(w)
		b, err := os.ReadFile(filepath.Join(chart, "crds", filepath.Base(w)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from the chart's copy (run make manifests): %v", filepath.Base(w), err)
		}
	}
}

// TestDockerfile reads the Dockerfile: a multi-stage build whose final stage
// is distroless (or scratch), runs as a numeric non-root user, and starts
// `tinymod run`; the build is CGO_ENABLED=0.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]string // instructions per stage
	s := bufio.NewScanner(bytes.NewReader(data))
	var line string
	for s.Scan() {
		l := strings.TrimSpace(s.Text())
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		line += l
		if strings.HasSuffix(line, "\\") {
			line = strings.TrimSuffix(line, "\\") + " "
			continue
		}
		if strings.HasPrefix(strings.ToUpper(line), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], line)
		}
		line = ""
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	final := stages[len(stages)-1]
	base := strings.Fields(final[0])[1]
	if !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Errorf("final base %s: want distroless static or scratch", base)
	}
	var user, entrypoint string
	for _, in := range final {
		f := strings.SplitN(in, " ", 2)
		switch strings.ToUpper(f[0]) {
		case "USER":
			user = strings.TrimSpace(f[1])
		case "ENTRYPOINT":
			entrypoint = f[1]
		}
	}
	uid := strings.Split(user, ":")[0]
	if uid == "" || uid == "0" || uid == "root" || strings.Trim(uid, "0123456789") != "" {
		t.Errorf("final stage USER %q: want a numeric non-root user", user)
	}
	if entrypoint != `["/tinymod", "run"]` {
		t.Errorf("ENTRYPOINT %s: want tinymod run", entrypoint)
	}
	build := strings.Join(stages[0], "\n")
	if !strings.Contains(build, "CGO_ENABLED=0 go build") {
		t.Errorf("the build stage does not build with CGO_ENABLED=0")
	}
}

// TestStaticBinary builds the binary as the Dockerfile does and checks that it
// needs no dynamic loader or shared library: it runs on scratch.
func TestStaticBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tinymod")
	ctx := controlplanetest.Context(t, 5*time.Minute)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/tinymod")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %s program header: not static", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs %v", libs)
	}
}

// TestChartRendersValidObjects lints the chart, renders it with several value
// sets, checks what the Deployment promises, and has the API server validate
// every object.
func TestChartRendersValidObjects(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	if out, err := exec.Command(helm(t), "lint", "--strict", chart).CombinedOutput(); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	for name, args := range map[string][]string{
		"defaults":        nil,
		"existing secret": {"--set", "grpc.auth.create=false", "--set", "grpc.auth.existingSecret=shared-token"},
		"no auth":         {"--set", "grpc.auth.create=false"},
		"hard spreading":  {"--set", "antiAffinity=hard", "--set", "podDisruptionBudget.enabled=false", "--set", "replicaCount=5"},
		"own account":     {"--set", "serviceAccount.create=false", "--set", "serviceAccount.name=mine", "--set", "rbac.create=false"},
	} {
		t.Run(name, func(t *testing.T) {
			objs := objects(t, render(t, ns, args...))
			dryRun(t, env.Client, ns, objs)
			u := find(objs, "Deployment", "")
			if u == nil {
				t.Fatal("no Deployment")
			}
			checkDeployment(t, name, convert[appsv1.Deployment](t, u), args)
			if svc := find(objs, "Service", ""); svc == nil || convert[corev1.Service](t, svc).Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("no headless Service")
			}
			if pdb := find(objs, "PodDisruptionBudget", ""); (pdb != nil) == slices.Contains(args, "podDisruptionBudget.enabled=false") {
				t.Errorf("PodDisruptionBudget present: %v", pdb != nil)
			}
		})
	}
}

func checkDeployment(t *testing.T, name string, d *appsv1.Deployment, args []string) {
	t.Helper()
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if name == "defaults" && *d.Spec.Replicas != 3 {
		t.Errorf("replicas %d, want 3 by default", *d.Spec.Replicas)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for name, path := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"} {
		if e := env[name]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != path {
			t.Errorf("%s not from the downward API's %s: %+v", name, path, e)
		}
	}
	_, token := env["TINYMOD_GRPC_TOKEN"]
	insecure := slices.Contains(c.Args, "--insecure-grpc")
	if token == insecure {
		t.Errorf("token from a Secret %v, --insecure-grpc %v: want exactly one", token, insecure)
	}
	var shutdown time.Duration
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--shutdown-timeout="); ok {
			shutdown, _ = time.ParseDuration(v)
		}
	}
	if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; shutdown == 0 || grace <= shutdown {
		t.Errorf("termination grace %s is not longer than the graceful stop %s", grace, shutdown)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes: readiness %+v, liveness %+v", c.ReadinessProbe, c.LivenessProbe)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("no resource requests: %+v", c.Resources)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Errorf("pod may run as root")
	}
	a := pod.Affinity
	switch {
	case slices.Contains(args, "antiAffinity=hard"):
		if a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) == 0 {
			t.Errorf("hard anti-affinity missing: %+v", a)
		}
	default:
		if a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
			t.Errorf("replicas are not spread across nodes: %+v", a)
		}
	}
}

// TestRunsUnderChartRBAC runs two replicas as the chart's service account,
// bound only by the chart's rendered Roles and RoleBindings, and has them do
// all their work: election, node status and finalizers, a signal, a graceful
// handover. Nothing is refused, and the reader writes nothing but Leases.
func TestRunsUnderChartRBAC(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 3*time.Minute)
	user, cfg, rbacObjs := underChartRBAC(t, env, ns)
	kc, err := controlplane.Kubeconfig("sa", cfg)
	if err != nil {
		t.Fatal(err)
	}
	cluster := harness.NewCluster(t, kc)
	procs := map[string]*harness.Process{}
	for _, id := range []string{"rbac-0", "rbac-1"} {
		procs[id] = cluster.Run("tinymod", ns, id)
	}
	leaderID := harness.WaitLeader(t, env.Client, ns, "tinymod", 30*time.Second)
	readerID := "rbac-0"
	if leaderID == readerID {
		readerID = "rbac-1"
	}
	sample, err := os.ReadFile("../../config/samples/demo-flow.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.Apply(ctx, env.Client, ns, sample); err != nil {
		t.Fatal(err)
	}

	// The leader writes every node's status; none of the sample's components
	// owns cluster resources, so no node gets a finalizer.
	controlplanetest.Eventually(t, 60*time.Second, func() error {
		var list v1alpha1.TinyNodeList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, n := range list.Items {
			if len(n.Status.Conditions) == 0 || n.Status.Conditions[0].Status != metav1.ConditionTrue || len(n.Finalizers) != 0 {
				return fmt.Errorf("node %s: conditions %+v, finalizers %v", n.Name, n.Status.Conditions, n.Finalizers)
			}
		}
		return nil
	})
	// A signal starts the ticker: delivered, deleted, and the state written.
	sig := &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{Name: "start", Namespace: ns},
		Spec: v1alpha1.TinySignalSpec{Node: "ticker-1", Port: v1alpha1.ControlPort, Data: &apiextensionsv1.JSON{Raw: []byte(`{"start": true}`)}}}
	if err := env.Client.Create(ctx, sig); err != nil {
		t.Fatal(err)
	}
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		n := &v1alpha1.TinyNode{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ticker-1"}, n); err != nil {
			return err
		}
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(sig), &v1alpha1.TinySignal{})
		if !apierrors.IsNotFound(err) || n.Status.Metadata["running"] != "true" {
			return fmt.Errorf("signal still there (%v) or ticker not running: %v", err, n.Status.Metadata)
		}
		return nil
	})
	m := &v1alpha1.TinyModule{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "tinymod"}, m); err != nil || m.Status.Addr == "" {
		t.Errorf("TinyModule status not written: %v %+v", err, m.Status)
	}

	// A graceful stop hands over, and the leaver deletes its membership Lease.
	stopping := time.Now()
	if err := procs[leaderID].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	harness.WaitLeader(t, env.Client, ns, "tinymod", 10*time.Second, leaderID)
	select {
	case <-procs[leaderID].Exited:
		if procs[leaderID].Err != nil {
			t.Errorf("%s exited with %v", leaderID, procs[leaderID].Err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running after SIGTERM", leaderID)
	}
	err = env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: leader.MemberLeaseName("tinymod", leaderID)}, &coordinationv1.Lease{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("%s's membership Lease after a graceful stop: %v", leaderID, err)
	}

	// Nothing was refused: no write answered 403 in the audit log, no
	// "forbidden" in either replica's log.
	for _, w := range env.Writes(t, user, ns) {
		if w.ResponseStatus.Code == 403 {
			t.Errorf("refused under the chart's RBAC: %s %s/%s (%s)", w.Verb, w.ObjectRef.Resource, w.ObjectRef.Subresource, w.UserAgent)
		}
		// Until the handover, the reader writes nothing but Leases (and, as
		// any replica does at start-up, creates the TinyModule if missing).
		reader := strings.Contains(w.UserAgent, "identity "+readerID+")")
		moduleCreate := w.Verb == "create" && w.ObjectRef.Resource == "tinymodules"
		if reader && w.ObjectRef.Resource != "leases" && !moduleCreate && w.Received.Time.Before(stopping) {
			t.Errorf("reader %s wrote %s %s/%s", readerID, w.Verb, w.ObjectRef.Resource, w.ObjectRef.Name)
		}
	}
	for id, p := range procs {
		data, _ := os.ReadFile(p.Log)
		if bytes.Contains(bytes.ToLower(data), []byte("forbidden")) {
			for _, l := range strings.Split(string(data), "\n") {
				if strings.Contains(strings.ToLower(l), "forbidden") {
					t.Errorf("%s: %s", id, l)
					break
				}
			}
		}
	}
	// The Roles grant what was used and not more than the chart says.
	checkRules(t, rbacObjs)
}

// underChartRBAC renders the chart for ns, creates its ServiceAccount,
// Roles and RoleBindings, and returns a user of the API server that is that
// service account, with its config, and the RBAC objects.
func underChartRBAC(t *testing.T, env *controlplanetest.Env, ns string) (string, *rest.Config, []*unstructured.Unstructured) {
	t.Helper()
	ctx := controlplanetest.Context(t, time.Minute)
	objs := objects(t, render(t, ns))
	var rbacObjs []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
			rbacObjs = append(rbacObjs, o)
			if err := env.Client.Create(ctx, o); err != nil {
				t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
	// Only namespaced Roles: nothing cluster-wide.
	for _, o := range rbacObjs {
		if strings.HasPrefix(o.GetKind(), "Cluster") {
			t.Errorf("the chart grants %s %s", o.GetKind(), o.GetName())
		}
	}
	sa := find(objs, "ServiceAccount", "").GetName()
	user := fmt.Sprintf("system:serviceaccount:%s:%s", ns, sa)
	cfg, err := env.AddUser(user, "system:serviceaccounts", "system:serviceaccounts:"+ns, "system:authenticated")
	if err != nil {
		t.Fatal(err)
	}
	return user, cfg, rbacObjs
}

// checkRules keeps the Roles least-privileged: no wildcard, no Secrets, and
// only tinymod's kinds, Leases, Events, and the Services and Ingresses of
// exposed ports.
func checkRules(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	allowed := map[string]bool{"operator.tinysystems.io": true, "coordination.k8s.io": true, "events.k8s.io": true, "networking.k8s.io": true, "": true}
	for _, o := range objs {
		if o.GetKind() != "Role" {
			continue
		}
		role := convert[rbacv1.Role](t, o)
		for _, r := range role.Rules {
			for _, g := range r.APIGroups {
				if !allowed[g] {
					t.Errorf("role %s grants API group %q", role.Name, g)
				}
			}
			if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") {
				t.Errorf("role %s has a wildcard: %+v", role.Name, r)
			}
			// Of the core group, only Services (for exposed ports).
			if slices.Contains(r.APIGroups, "") && !slices.Equal(r.Resources, []string{"services"}) {
				t.Errorf("role %s grants core resources %v", role.Name, r.Resources)
			}
		}
	}
}

// TestKustomizeBaseRenderedFromChart: config/deploy is the chart rendered
// (make manifests), and what kustomize builds from it the API server takes.
func TestKustomizeBaseRenderedFromChart(t *testing.T) {
	env := controlplanetest.Start(t)
	fresh := filepath.Join(t.TempDir(), "tinymod.yaml")
	cmd := exec.Command("../../hack/render-manifests.sh", fresh)
	cmd.Env = append(os.Environ(), "HELM="+helm(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("render: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(fresh)
	got, err := os.ReadFile("../../config/deploy/tinymod.yaml")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("config/deploy/tinymod.yaml is not the chart rendered (run make manifests): %v", err)
	}
	out, err := exec.Command(env.Kubectl(), "kustomize", "../../config/deploy").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("kubectl kustomize: %v\n%s", err, stderr)
	}
	objs := objects(t, out)
	ctx := controlplanetest.Context(t, time.Minute)
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tinymod"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
		if o.GetKind() == "Namespace" {
			continue // made above, for the dry runs of what lives in it
		}
		if o.GetKind() != "CustomResourceDefinition" && o.GetNamespace() != "tinymod" {
			t.Errorf("%s %s in namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
	dryRun(t, env.Client, "tinymod", slices.DeleteFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "Namespace" }))
	bases, _ := filepath.Glob("../../config/crd/bases/*.yaml")
	if n := len(slices.DeleteFunc(slices.Clone(kinds), func(k string) bool { return k != "CustomResourceDefinition" })); n != len(bases) {
		t.Errorf("the kustomize base has %d CRDs, config/crd/bases %d: list them all in config/crd/kustomization.yaml", n, len(bases))
	}
	for _, k := range []string{"CustomResourceDefinition", "Deployment", "Service", "Role", "RoleBinding", "ServiceAccount", "PodDisruptionBudget"} {
		if !slices.Contains(kinds, k) {
			t.Errorf("the kustomize base has no %s", k)
		}
	}
}
