package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/replica"
)

// NewSignalCommand returns `signal`: create a TinySignal for a node's port.
func NewSignalCommand() *cobra.Command {
	var (
		node, port, data, namespace, kubeconfig string
		wait                                    bool
		timeout                                 time.Duration
	)
	cmd := &cobra.Command{
		Use:   "signal --node NODE --port PORT [--data JSON]",
		Short: "Send a TinySignal to a node's port",
		Long: `Creates a TinySignal. The module's leader delivers it to the node's port and
deletes it; a signal that cannot be delivered ends with phase Failed.`,
		Example: `  tinymod signal --node ticker-1 --port _control --data '{"start": true}'
  tinymod signal --node signal-1 --port _control --data '{"send": true, "context": {"who": "me"}}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw *apiextensionsv1.JSON
			if data != "" {
				if !json.Valid([]byte(data)) {
					return fmt.Errorf("--data is not JSON: %s", data)
				}
				raw = &apiextensionsv1.JSON{Raw: []byte(data)}
			}
			c, ns, err := kubeClient(kubeconfig, namespace)
			if err != nil {
				return err
			}
			s := &v1alpha1.TinySignal{
				ObjectMeta: metav1.ObjectMeta{GenerateName: node + "-", Namespace: ns},
				Spec:       v1alpha1.TinySignalSpec{Node: node, Port: port, Data: raw},
			}
			if err := c.Create(cmd.Context(), s); err != nil {
				return fmt.Errorf("create signal: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tinysignal/%s created\n", s.Name)
			if !wait {
				return nil
			}
			return waitDelivered(cmd.Context(), c, s, timeout, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "target TinyNode (required)")
	cmd.Flags().StringVar(&port, "port", "", "target port, such as _control (required)")
	cmd.Flags().StringVar(&data, "data", "", "the message, any JSON value")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default: the kubeconfig's, else default)")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, else ~/.kube/config)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the signal is delivered or has failed; fail with its error")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long --wait waits")
	_ = cmd.MarkFlagRequired("node")
	_ = cmd.MarkFlagRequired("port")
	return cmd
}

// kubeClient returns a client for tinymod's kinds and the namespace to use.
func kubeClient(kubeconfig, namespace string) (client.Client, string, error) {
	cfg, namespace, err := kubeConfig(kubeconfig, namespace)
	if err != nil {
		return nil, "", err
	}
	c, err := client.New(cfg, client.Options{Scheme: replica.Scheme()})
	return c, namespace, err
}

// kubeConfig loads the kubeconfig and picks the namespace: the flag, the
// kubeconfig's, $POD_NAMESPACE, else default.
func kubeConfig(kubeconfig, namespace string) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	if namespace == "" {
		if namespace, _, err = loader.Namespace(); err != nil || namespace == "" {
			namespace = os.Getenv("POD_NAMESPACE")
		}
		if namespace == "" {
			namespace = "default"
		}
	}
	return cfg, namespace, nil
}

// waitDelivered polls the signal until it is gone (delivered and deleted) or
// Failed.
func waitDelivered(ctx context.Context, c client.Client, s *v1alpha1.TinySignal, timeout time.Duration, out io.Writer) error {
	deadline := time.Now().Add(timeout)
	for {
		got := &v1alpha1.TinySignal{}
		err := c.Get(ctx, client.ObjectKeyFromObject(s), got)
		switch {
		case apierrors.IsNotFound(err):
			fmt.Fprintf(out, "tinysignal/%s delivered\n", s.Name)
			return nil
		case err != nil:
			return err
		case got.UID != s.UID:
			fmt.Fprintf(out, "tinysignal/%s delivered\n", s.Name)
			return nil
		case got.Status.Phase == v1alpha1.SignalFailed:
			return fmt.Errorf("tinysignal/%s failed after %d attempts: %s", s.Name, got.Status.Attempts, got.Status.LastError)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tinysignal/%s not delivered within %s (phase %q, %d attempts, last error %q); is a replica of the node's module running?",
				s.Name, timeout, got.Status.Phase, got.Status.Attempts, got.Status.LastError)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
