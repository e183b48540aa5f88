// Package controlplane runs a real local Kubernetes control plane: etcd and
// kube-apiserver, built from source by `make controlplane`, with tinymod's CRDs
// installed. Tests and `tinymod controlplane` both start it through Start.
package controlplane

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tinymod/tinymod/config/crd"
)

// Versions of the binaries that hack/controlplane builds. A test keeps them in
// step with hack/controlplane/go.mod.
const (
	KubernetesVersion = "v1.36.3"
	EtcdVersion       = "v3.6.16"
)

// DirEnv names the environment variable that overrides the binaries' folder.
const DirEnv = "TINYMOD_CONTROLPLANE_DIR"

// binaries are the commands the control plane needs, all in one folder.
var binaries = []string{"etcd", "kube-apiserver", "kubectl"}

// BinDir returns the folder that holds the control-plane binaries:
// $TINYMOD_CONTROLPLANE_DIR if set, else the per-user cache shared by every
// clone on the machine, ${XDG_CACHE_HOME:-~/.cache}/tinymod/controlplane/<versions>.
func BinDir() string {
	if dir := os.Getenv(DirEnv); dir != "" {
		return dir
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "tinymod", "controlplane",
		fmt.Sprintf("k8s-%s_etcd-%s", KubernetesVersion, EtcdVersion))
}

// ErrMissingBinaries is returned when a control-plane binary is not built.
var ErrMissingBinaries = errors.New("control-plane binaries are missing")

// CheckBinaries reports which binaries are missing from dir, with how to build them.
func CheckBinaries(dir string) error {
	var missing []string
	for _, name := range binaries {
		if info, err := os.Stat(filepath.Join(dir, name)); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %v not found in %s; build them with `make controlplane` (a cold build takes about 8 minutes)",
			ErrMissingBinaries, missing, dir)
	}
	return nil
}

// Options configure a control plane. The zero value is a throw-away one.
type Options struct {
	// BinDir holds etcd, kube-apiserver and kubectl. Defaults to BinDir().
	BinDir string

	// DataDir keeps etcd's data, reused by the next start with the same folder.
	// Defaults to a temporary folder removed by Stop.
	DataDir string

	// Output receives the processes' logs. Defaults to discarding them.
	Output io.Writer

	// StartTimeout bounds the start of each process. Defaults to 60 seconds.
	StartTimeout time.Duration
}

// ControlPlane is a running etcd and kube-apiserver with tinymod's CRDs.
type ControlPlane struct {
	// Config reaches the API server as a cluster admin.
	Config *rest.Config
	// Kubeconfig is a kubeconfig file's content equivalent to Config.
	Kubeconfig []byte
	// BinDir is the folder of the binaries, kubectl included.
	BinDir string

	env *envtest.Environment
}

// Start runs etcd and kube-apiserver, installs the CRDs and waits until the API
// server serves them.
func Start(opts Options) (*ControlPlane, error) {
	if opts.BinDir == "" {
		opts.BinDir = BinDir()
	}
	if err := CheckBinaries(opts.BinDir); err != nil {
		return nil, err
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	crds, err := crd.CRDs()
	if err != nil {
		return nil, fmt.Errorf("load CRDs: %w", err)
	}
	etcd := &envtest.Etcd{DataDir: opts.DataDir}
	if opts.DataDir != "" {
		if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create etcd data folder: %w", err)
		}
	}
	apiServer := &envtest.APIServer{}
	if opts.Output != nil {
		etcd.Out, etcd.Err = opts.Output, opts.Output
		apiServer.Out, apiServer.Err = opts.Output, opts.Output
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    opts.BinDir,
		CRDs:                     crds,
		ErrorIfCRDPathMissing:    true,
		ControlPlane:             envtest.ControlPlane{Etcd: etcd, APIServer: apiServer},
		ControlPlaneStartTimeout: opts.StartTimeout,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	return &ControlPlane{Config: cfg, Kubeconfig: env.KubeConfig, BinDir: opts.BinDir, env: env}, nil
}

// Kubectl is the path of the kubectl built with the control plane.
func (c *ControlPlane) Kubectl() string { return filepath.Join(c.BinDir, "kubectl") }

// Stop stops kube-apiserver and etcd and waits for both to exit.
func (c *ControlPlane) Stop() error {
	return c.env.Stop()
}
