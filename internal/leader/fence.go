package leader

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
)

// ErrFenced is the error of a write that a Fence kept from leaving a replica
// that does not lead.
var ErrFenced = errors.New("not the leader: the write was not sent")

// Fence guards an API client's transport: changes to existing objects of the
// guarded API groups (updates, patches, deletes) are sent only if, right before they leave (after client-go's rate limiter,
// which can hold a request back for a while), the replica still leads.
// Otherwise they fail with ErrFenced and never reach the API server.
//
// It narrows, but cannot close, the window in which a leader paused between
// the check and the send writes after its lease has passed to another:
// resourceVersion preconditions on status writes narrow the rest.
type Fence struct {
	// Groups are the API groups whose writes are leader-only.
	Groups []string
	status atomic.Pointer[Status]
}

// Set gives the fence the leadership it checks; until then every guarded
// write is refused.
func (f *Fence) Set(s Status) { f.status.Store(&s) }

// Wrap returns rt guarded by the fence, for rest.Config.Wrap.
func (f *Fence) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		if action, guarded := f.guards(req); guarded {
			s := f.status.Load()
			if s == nil || !Authorize(*s, action) {
				return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, ErrFenced)
			}
		}
		return rt.RoundTrip(req)
	})
}

// guards reports whether req is a write to a guarded group, and names it.
func (f *Fence) guards(req *http.Request) (string, bool) {
	switch req.Method {
	case http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		// Reads, and creates: a create cannot undo another's work, and any
		// replica creates its module's TinyModule when it is missing.
		return "", false
	}
	for _, g := range f.Groups {
		if rest, ok := strings.CutPrefix(req.URL.Path, "/apis/"+g+"/"); ok {
			return "api " + req.Method + " " + rest, true
		}
	}
	return "", false
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
