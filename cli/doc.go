// Package cli holds the commands of a tinymod binary: `run` for one replica of a
// module, and the developer tooling (`controlplane`, `dev`, `signal`, ...).
// A module author's own binary gets the same commands from here.
package cli
