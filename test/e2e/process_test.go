package e2e

import (
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/test/e2e/harness"
)

type (
	process = harness.Process
	logLine = harness.LogLine
)

func newCluster(t *testing.T, kubeconfig []byte) *harness.Cluster {
	return harness.NewCluster(t, kubeconfig)
}

// waitLeader waits until the module's Lease is held, by none of not, and
// returns the holder.
func waitLeader(t *testing.T, c client.Client, ns, moduleName string, not ...string) string {
	t.Helper()
	return harness.WaitLeader(t, c, ns, moduleName, 30*time.Second, not...)
}
