package leader

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ErrFenced is the error of a write that a Fence kept from leaving a replica
// that does not lead.
var ErrFenced = errors.New("not the leader: the write was not sent")

// Fence guards an API client's transport: a change to an existing object
// (an update, a patch or a delete) is sent only if the request's context
// carries a Term (WithTerm) and, right before the request leaves (after
// client-go's rate limiter, which can hold it back for a while), that term is
// still Valid. Otherwise it fails with ErrFenced and never reaches the API
// server. This covers tinymod's kinds and everything a leader writes for its
// nodes (Services, Ingresses...). Exempt are a replica's Leases, which every
// replica writes (the election's and its membership Lease), and Events.
// Creates are not guarded: a create cannot undo another's work, and any
// replica creates its module's TinyModule when it is missing.
//
// It narrows, but cannot close, the window in which a leader paused between
// the check and the send writes after its lease has passed to another:
// resourceVersion preconditions on status writes narrow the rest.
type Fence struct {
	// Prefix is the path of the API server's URL (rest.Config.Host), when it
	// is served under one ("/k8s/clusters/c-1"): request paths are read
	// after it. Empty for an API server at the root.
	Prefix string
}

// PrefixOf returns the path prefix of an API server host as rest.Config
// gives it ("https://host:6443/k8s/clusters/c-1" -> "/k8s/clusters/c-1").
func PrefixOf(host string) string {
	u, err := url.Parse(host)
	if err != nil || u.Host == "" {
		// A bare host:port, no scheme.
		u, err = url.Parse("https://" + host)
		if err != nil {
			return ""
		}
	}
	return strings.TrimRight(u.Path, "/")
}

// Wrap returns rt guarded by the fence, for rest.Config.Wrap.
func (f *Fence) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		if action, guarded := f.guards(req); guarded {
			if !TermFrom(req.Context()).Confirm(action) {
				return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, ErrFenced)
			}
		}
		return rt.RoundTrip(req)
	})
}

// guards reports whether req is a guarded write, and names it.
func (f *Fence) guards(req *http.Request) (string, bool) {
	switch req.Method {
	case http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return "", false
	}
	path := strings.TrimPrefix(req.URL.Path, f.Prefix)
	var rest string
	switch {
	case strings.HasPrefix(path, "/apis/"):
		rest = strings.TrimPrefix(path, "/apis/")
	case strings.HasPrefix(path, "/api/"):
		rest = "core/" + strings.TrimPrefix(path, "/api/")
	default:
		return "", false
	}
	// rest: group/version/[namespaces/ns/]resource/...
	parts := strings.Split(rest, "/")
	if len(parts) < 3 {
		return "", false
	}
	group, resource := parts[0], parts[2]
	if resource == "namespaces" && len(parts) >= 5 {
		resource = parts[4]
	}
	switch {
	case group == "coordination.k8s.io" && resource == "leases",
		resource == "events" && (group == "core" || group == "events.k8s.io"):
		return "", false
	}
	return "api " + req.Method + " " + rest, true
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
