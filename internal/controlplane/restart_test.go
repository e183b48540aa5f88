package controlplane_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

// TestRestartAPIServerKeepsDataAndClients restarts kube-apiserver under
// clients made before the restart: they reconnect to the same address with the
// same credentials, and what was stored in etcd is still there.
func TestRestartAPIServerKeepsDataAndClients(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	ctx := controlplanetest.Context(t, 2*time.Minute)
	user := kubernetes.NewForConfigOrDie(env.UserConfig(t, "restart-user"))
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept", Namespace: ns}, Data: map[string]string{"k": "v"}}
	if _, err := user.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// An open watch must not hold the restart up (kube-apiserver waits for
	// watches on SIGTERM unless told otherwise).
	w, err := user.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	started := time.Now()
	if err := env.RestartAPIServer(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(started); took > 20*time.Second {
		t.Errorf("restart took %s with a watch open", took)
	}

	controlplanetest.Eventually(t, 30*time.Second, func() error {
		got, err := user.CoreV1().ConfigMaps(ns).Get(context.Background(), "kept", metav1.GetOptions{})
		if err == nil && got.Data["k"] != "v" {
			t.Fatalf("config map after restart: %v", got.Data)
		}
		return err
	})
	// The CRDs are served again, through the admin client made before.
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		return env.Client.List(context.Background(), &v1alpha1.TinyNodeList{})
	})
}
