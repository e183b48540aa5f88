// Package leader decides which replica of a module leads. It knows nothing of
// nodes or components: the rest of the runtime learns of leadership through
// the Status interface, carried in contexts for utils.IsLeader.
package leader
