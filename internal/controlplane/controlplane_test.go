package controlplane

import (
	"os"
	"strings"
	"testing"
)

// TestVersionsMatchBuild keeps the versions Go looks for in step with the ones
// hack/controlplane builds.
func TestVersionsMatchBuild(t *testing.T) {
	data, err := os.ReadFile("../../hack/controlplane/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for module, want := range map[string]string{"k8s.io/kubernetes": KubernetesVersion, "go.etcd.io/etcd/server/v3": EtcdVersion} {
		found := false
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == module {
				found = true
				if f[1] != want {
					t.Errorf("hack/controlplane builds %s %s, Go looks for %s", module, f[1], want)
				}
			}
		}
		if !found {
			t.Errorf("hack/controlplane/go.mod does not require %s", module)
		}
	}
}

func TestCheckBinariesNamesMakeTarget(t *testing.T) {
	err := CheckBinaries(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "make controlplane") || !strings.Contains(err.Error(), "kube-apiserver") {
		t.Fatalf("CheckBinaries on an empty folder: %v", err)
	}
	if err := CheckBinaries(BinDir()); err != nil {
		t.Logf("binaries not built here: %v", err)
	}
}
