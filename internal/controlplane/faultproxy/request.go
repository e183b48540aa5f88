package faultproxy

import (
	"net/http"
	"strings"
)

// Request is what an API request does, read from its method and path the way
// the API server reads it.
type Request struct {
	// Verb is the Kubernetes verb (get, list, watch, create, update, patch,
	// delete, deletecollection), or the lower-case method of a request that
	// names no resource (discovery, /version, /healthz).
	Verb string
	// Group is the API group ("" for the core group).
	Group string
	// Namespace, Resource, Name and Subresource name the object; Resource is
	// empty for a request that names no resource.
	Namespace, Resource, Name, Subresource string
}

// Write reports whether the request may change an object.
func (r Request) Write() bool {
	switch r.Verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

// Target is the resource with its subresource, "tinysignals/status" say, or
// the path for a request that names no resource.
func (r Request) Target() string {
	if r.Subresource != "" {
		return r.Resource + "/" + r.Subresource
	}
	return r.Resource
}

// Classify reads what req does.
func Classify(req *http.Request) Request {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	var out Request
	var rest []string
	switch {
	case len(parts) >= 3 && parts[0] == "api": // /api/v1/...
		rest = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis": // /apis/group/version/...
		out.Group = parts[1]
		rest = parts[3:]
	default:
		out.Verb = strings.ToLower(req.Method)
		out.Resource = req.URL.Path
		return out
	}
	watchPath := false
	if len(rest) > 0 && rest[0] == "watch" { // the deprecated /watch/ paths
		watchPath, rest = true, rest[1:]
	}
	// namespaces/NS/RESOURCE/..., unless it is the namespace itself
	// (namespaces/NS or namespaces/NS/status).
	if len(rest) >= 3 && rest[0] == "namespaces" && rest[2] != "status" && rest[2] != "finalize" {
		out.Namespace, rest = rest[1], rest[2:]
	}
	if len(rest) > 0 {
		out.Resource = rest[0]
	}
	if len(rest) > 1 {
		out.Name = rest[1]
	}
	if len(rest) > 2 {
		out.Subresource = strings.Join(rest[2:], "/")
	}
	watch := watchPath || req.URL.Query().Get("watch") == "true" || req.URL.Query().Get("watch") == "1"
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watch:
			out.Verb = "watch"
		case out.Name == "":
			out.Verb = "list"
		default:
			out.Verb = "get"
		}
	case http.MethodPost:
		out.Verb = "create"
	case http.MethodPut:
		out.Verb = "update"
	case http.MethodPatch:
		out.Verb = "patch"
	case http.MethodDelete:
		if out.Name == "" {
			out.Verb = "deletecollection"
		} else {
			out.Verb = "delete"
		}
	default:
		out.Verb = strings.ToLower(req.Method)
	}
	return out
}
