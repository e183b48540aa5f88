// Package tinysystems is the root of packages that mirror the import paths of
// the TinySystems module SDK (github.com/tiny-systems/module), so that
// components written for it build and run on tinymod with one change: the
// import prefix
//
//	github.com/tiny-systems/module/  →  github.com/tinymod/tinymod/compat/tinysystems/
//
// The packages are module, registry, api/v1alpha1 and pkg/utils. Components
// registered through registry.Register run under that SDK's contract (see
// docs/migrating.md): _reconcile carries the node by value and comes before
// _settings, a _control port declared as a source still receives, OnDestroy
// runs when the node is deleted (not when a replica stops), messages decode
// over the zero value of the port's type, and a reader's metadata writes are
// forwarded to the leader, which writes them.
package tinysystems
