// Package leader decides which replica of a module leads. It knows nothing of
// nodes or components.
//
// Leadership is a value: each acquisition of the Lease is a Term, with a
// number unique to it, a context that ends with it and a live Valid. Work that
// only a leader may do takes the current Term once, from a Source (the
// Elector, or Always and Manual in tests), runs under its context and checks
// it right before each step; writes carry it in their context (WithTerm) to
// the Fence, which checks it again as the request leaves. utils.IsLeader asks
// a Source carried in the component's context (NewContext).
//
// The rules (may I acquire, am I still leader at time t, what do I do now) are
// plain functions of what a replica has observed and its monotonic clock
// (Decide, CanAcquire, IsValid, Newer); the Elector is a thin loop that
// carries them out against the API server.
//
// Guaranteed, with clock rates that agree to within (LeaseDuration -
// RenewDeadline) / LeaseDuration: no two replicas hold a valid Term at the
// same instant, even when one is paused, cut off or suspended (validity is
// read on CLOCK_BOOTTIME); a watch event older than a version already seen
// never ends a term. Not guaranteed: fencing of writes made by other means
// than tinymod's clients; a component that ignores its context and
// utils.IsLeader may go on acting after its term.
package leader
