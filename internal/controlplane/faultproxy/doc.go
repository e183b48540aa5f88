// Package faultproxy is an HTTPS proxy in front of a Kubernetes API server that
// fails a share of the requests passing through it, the ways an overloaded,
// restarting or contended API server does: 503, 429 with Retry-After, a request
// held and then dropped unanswered, a 409 conflict on a write, and an answer
// lost after the API server acted on the request. Every other request is
// forwarded as it is; watches stream through, flushed as they arrive, and are
// only ever failed when they start.
//
// A proxy is made for one user of the API server. It terminates TLS with a
// certificate of its own and forwards with that user's credentials (a client
// certificate cannot be forwarded through a TLS termination), so the API
// server, its authorization and its audit log see the user's requests as the
// user's own. One proxy per process keeps every process's identity.
//
// The proxy counts the faults it injects by kind, verb and resource; several
// proxies may share one Tally.
package faultproxy
