// Package leadership is leadership as a value, apart from how it is won: a
// Term, the Source that hands out the current one, and the context that lets
// a component ask utils.IsLeader. Package leader's Elector is the Source that
// runs on a cluster; Always, Never and Manual serve single replicas and tests.
//
// It imports nothing but the standard library, so the SDK's facade
// (pkg/utils) stays light and builds everywhere; package leader re-exports
// every name here for the runtime's own code.
package leadership
