package cli

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tinymod/tinymod/internal/ui"
)

// NewUICommand returns `ui`: the page that shows, runs and edits the flows
// of a namespace.
func NewUICommand() *cobra.Command {
	var (
		namespace, kubeconfig, listen string
		expose                        bool
	)
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve a page that shows, runs and edits the flows of a namespace, live",
		Long: `Serves one page, embedded in this binary, for the cluster the kubeconfig
reaches: each flow drawn as a graph with its nodes' state and message rates,
which replica leads each module and for how long, buttons that press signals,
forms that edit settings, and the last messages of debug nodes. The page is
pushed every change as it happens (server-sent events fed by watches).

Every change it makes is an ordinary API write with the kubeconfig's
credentials, so RBAC applies. It listens on loopback only unless --expose is
given, and changes need the page's own session token, which the page
itself carries: whoever can load the page can change flows.`,
		Example: `  tinymod ui
  tinymod ui --namespace flows --listen 127.0.0.1:9000
  tinymod ui --listen 0.0.0.0:8090 --expose   # reachable from other machines`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, ns, err := kubeConfig(kubeconfig, namespace)
			if err != nil {
				return err
			}
			s, err := ui.New(ui.Options{Config: cfg, Namespace: ns, Listen: listen, Expose: expose})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tinymod ui: namespace %s at %s\n", ns, s.URL())
			if expose {
				// The page hands its session token to whoever loads it.
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: the page is exposed beyond this machine; anyone who reaches %s can see the namespace's flows and change them with your credentials\n", s.URL())
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return s.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&namespace, "namespace", "n", "", "namespace (default: the kubeconfig's, else default)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file")
	f.StringVar(&listen, "listen", ui.DefaultListen, "address to serve the page on")
	f.BoolVar(&expose, "expose", false, "allow --listen on an address other than loopback")
	return cmd
}
