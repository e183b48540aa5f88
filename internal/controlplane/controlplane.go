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
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
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

	// Audit makes the API server log every write to tinymod's kinds, Leases and
	// Events, with the user who made it, to AuditLogPath.
	Audit bool
}

// auditPolicy logs writes, the ones tests count, and nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
  resources:
  - group: "operator.tinysystems.io"
  - group: "coordination.k8s.io"
  - group: "events.k8s.io"
  - group: ""
    resources: ["events"]
- level: None
`

// ControlPlane is a running etcd and kube-apiserver with tinymod's CRDs.
type ControlPlane struct {
	// Config reaches the API server as a cluster admin.
	Config *rest.Config
	// Kubeconfig is a kubeconfig file's content equivalent to Config.
	Kubeconfig []byte
	// BinDir is the folder of the binaries, kubectl included.
	BinDir string
	// AuditLogPath is the API server's audit log, with Options.Audit.
	AuditLogPath string

	env               *envtest.Environment
	auditDir, certDir string
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
	// The API server's certificates live in a folder of ours, so that a restart
	// serves the same ones and clients reconnect as they would to a real one.
	certDir, err := os.MkdirTemp("", "tinymod-apiserver-")
	if err != nil {
		return nil, err
	}
	apiServer := &envtest.APIServer{CertDir: certDir}
	// On SIGTERM, end open watches after a short grace instead of waiting for
	// each to time out, so that a stop or restart takes seconds.
	apiServer.Configure().Set("shutdown-watch-termination-grace-period", "2s").
		// Serve Lease watches from etcd rather than the watch cache, which a
		// new API server starts empty: a watch of a Lease then resumes across a
		// restart from the version it last saw, and an audit of the Lease's
		// history misses nothing.
		Set("watch-cache-sizes", "leases.coordination.k8s.io#0")
	var auditLog, auditDir string
	if opts.Audit {
		if auditDir, err = os.MkdirTemp("", "tinymod-audit-"); err != nil {
			return nil, err
		}
		policy := filepath.Join(auditDir, "policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
			return nil, err
		}
		auditLog = filepath.Join(auditDir, "audit.log")
		apiServer.Configure().
			Set("audit-policy-file", policy).
			Set("audit-log-path", auditLog).
			Set("audit-log-format", "json").
			Set("audit-log-mode", "blocking")
	}
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
		_ = os.RemoveAll(certDir)
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	return &ControlPlane{Config: cfg, Kubeconfig: env.KubeConfig, BinDir: opts.BinDir, AuditLogPath: auditLog,
		auditDir: auditDir, certDir: certDir, env: env}, nil
}

// AddUser returns a config for a new user of the API server in groups, so a
// replica can run as itself and its requests be told apart in the audit log.
func (c *ControlPlane) AddUser(name string, groups ...string) (*rest.Config, error) {
	u, err := c.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, err
	}
	return rest.CopyConfig(u.Config()), nil
}

// Kubeconfig returns a kubeconfig file's content for cfg (from AddUser), as
// user: for a process that runs as that user.
func Kubeconfig(user string, cfg *rest.Config) ([]byte, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: user}
	kc.CurrentContext = "local"
	return clientcmd.Write(*kc)
}

// Kubectl is the path of the kubectl built with the control plane.
func (c *ControlPlane) Kubectl() string { return filepath.Join(c.BinDir, "kubectl") }

// RestartAPIServer stops kube-apiserver and starts it again on the same
// address, with the same certificates and users, while etcd and its data stay:
// what a control-plane upgrade or a crashed API server looks like to clients.
// It returns once the new process answers its health check.
func (c *ControlPlane) RestartAPIServer() error {
	s := c.env.ControlPlane.APIServer
	if err := s.Stop(); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	if err := s.Start(); err != nil {
		return fmt.Errorf("start kube-apiserver again: %w", err)
	}
	return nil
}

// Stop stops kube-apiserver and etcd and waits for both to exit.
func (c *ControlPlane) Stop() error {
	err := c.env.Stop()
	for _, dir := range []string{c.auditDir, c.certDir} {
		if dir != "" {
			_ = os.RemoveAll(dir)
		}
	}
	return err
}
