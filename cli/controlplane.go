package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tinymod/tinymod/internal/controlplane"
)

// NewControlPlaneCommand returns `controlplane`: a real local kube-apiserver and
// etcd with tinymod's CRDs, running until interrupted.
func NewControlPlaneCommand() *cobra.Command {
	var (
		dir        string
		kubeconfig string
		verbose    bool
	)
	cmd := &cobra.Command{
		Use:   "controlplane",
		Short: "Run a local kube-apiserver and etcd with tinymod's CRDs installed",
		Long: `Runs a real kube-apiserver and etcd on this machine, installs tinymod's CRDs
and writes an admin kubeconfig. Once the API server answers it prints a line
with "ready" and the kubeconfig's path on stdout, then runs until SIGINT or
SIGTERM, when it stops both processes and exits.

With --dir, etcd keeps its data in that folder and the next start reuses it.
Without it everything lives in a temporary folder removed on exit.

The binaries come from ` + "`make controlplane`" + `, which builds them from source
into ` + controlplane.BinDir() + ` ($` + controlplane.DirEnv + ` overrides it).`,
		Example: `  tinymod controlplane --dir .tinymod
  export KUBECONFIG=.tinymod/kubeconfig
  kubectl get tinynodes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var logs io.Writer
			if verbose {
				logs = cmd.ErrOrStderr()
			}
			return runControlPlane(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), logs, dir, kubeconfig)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "keep etcd data and the kubeconfig in this folder and reuse them on the next start (default: a temporary folder removed on exit)")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig-out", "", "where to write the admin kubeconfig (default: DIR/kubeconfig)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "show etcd's and kube-apiserver's logs on stderr")
	return cmd
}

func runControlPlane(ctx context.Context, stdout, stderr, logs io.Writer, dir, kubeconfig string) error {
	var dataDir string
	if dir == "" {
		tmp, err := os.MkdirTemp("", "tinymod-controlplane-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else {
		dataDir = filepath.Join(dir, "etcd")
	}
	if kubeconfig == "" {
		kubeconfig = filepath.Join(dir, "kubeconfig")
	}
	kubeconfig, err := filepath.Abs(kubeconfig)
	if err != nil {
		return err
	}

	fmt.Fprintf(stderr, "starting etcd and kube-apiserver %s...\n", controlplane.KubernetesVersion)
	cp, err := controlplane.Start(controlplane.Options{DataDir: dataDir, Output: logs})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(stderr, "stopping kube-apiserver and etcd...")
		if err := cp.Stop(); err != nil {
			fmt.Fprintf(stderr, "stop: %v\n", err)
		}
	}()
	if err := os.MkdirAll(filepath.Dir(kubeconfig), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, cp.Kubeconfig, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	fmt.Fprintf(stderr, "API server at %s; to use it:\n  export KUBECONFIG=%s\n", cp.Config.Host, kubeconfig)
	fmt.Fprintf(stdout, "ready kubeconfig: %s\n", kubeconfig)

	<-ctx.Done()
	return nil
}
