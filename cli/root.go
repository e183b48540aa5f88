package cli

import (
	"github.com/spf13/cobra"
)

// NewRootCommand returns the root command of a tinymod binary named name, with
// the developer commands added.
func NewRootCommand(name string) *cobra.Command {
	root := &cobra.Command{
		Use:           name,
		Short:         "Flow-based modules on Kubernetes, built on the leader-reader pattern",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.AddCommand(NewControlPlaneCommand())
	return root
}
