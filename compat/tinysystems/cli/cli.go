// Package cli mirrors the TinySystems SDK's cli package: RegisterCommands
// gives a module binary's root command tinymod's commands.
package cli

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	tmcli "github.com/tinymod/tinymod/cli"
)

// RegisterCommands adds tinymod's commands (run, dev, status, signal, ...)
// to rootCmd. The module's name, which `run` and `dev` take when --name is
// not given, is the binary's file name (SDK modules' root commands share
// generic names such as "server"); its version is the main module's, as the
// Go toolchain recorded it.
func RegisterCommands(rootCmd *cobra.Command) {
	version := "devel"
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		version = info.Main.Version
	}
	name := strings.TrimSuffix(filepath.Base(os.Args[0]), filepath.Ext(os.Args[0]))
	tm := tmcli.NewRootCommand(name, version)
	for _, c := range tm.Commands() {
		tm.RemoveCommand(c)
		rootCmd.AddCommand(c)
	}
}
