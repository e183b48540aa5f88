package cli

import (
	"github.com/spf13/cobra"
)

// NewRootCommand returns the root command of a tinymod binary named name, with
// `run` for the registered components and the developer commands added.
//
//	func main() {
//		module.Register(&mycomponent.Component{})
//		if err := cli.NewRootCommand("mymodule", "v1.0.0").Execute(); err != nil {
//			os.Exit(1)
//		}
//	}
func NewRootCommand(name, version string) *cobra.Command {
	root := &cobra.Command{
		Use:           name,
		Short:         "Flow-based modules on Kubernetes, built on the leader-reader pattern",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.AddCommand(NewRunCommand(version, nil))
	root.AddCommand(NewControlPlaneCommand())
	root.AddCommand(NewSignalCommand())
	root.AddCommand(NewStatusCommand())
	root.AddCommand(NewGraphCommand())
	root.AddCommand(NewDevCommand())
	root.AddCommand(NewImportCommand())
	return root
}
