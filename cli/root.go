package cli

import (
	"github.com/spf13/cobra"
)

// NewRootCommand returns the root command of a tinymod binary named name, with
// `run` for the registered components and the developer commands added. name
// is also the module's name that `run` and `dev` default --name to.
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
	// run and dev take the binary's name as the module's unless --name says
	// otherwise: a forgotten --name must not leave every node without a replica.
	root.AddCommand(newRunCommand(name, version, nil))
	root.AddCommand(NewControlPlaneCommand())
	root.AddCommand(NewSignalCommand())
	root.AddCommand(NewStatusCommand())
	root.AddCommand(NewGraphCommand())
	root.AddCommand(newDevCommand(name))
	root.AddCommand(NewImportCommand())
	root.AddCommand(NewUICommand())
	return root
}
