package controlplanetest

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Faults fails chosen API requests with 503 before they reach the API server,
// as an overloaded or restarting API server does. Put it in front of a client
// with rest.Config.Wrap(f.Wrap).
type Faults struct {
	mu    sync.Mutex
	rules []*FaultRule
}

// FaultRule is requests that Faults fails some of.
type FaultRule struct {
	f            *Faults
	method, path string // path: a part of the request's path
	body         string // a part of its body
	every, limit int
	seen, failed int
}

// Fail fails the requests of method whose path contains pathPart and whose
// body contains bodyPart: the first that match, then one in every (1: all),
// and limit of them at most (0: no bound).
func (f *Faults) Fail(method, pathPart, bodyPart string, every, limit int) *FaultRule {
	r := &FaultRule{f: f, method: method, path: pathPart, body: bodyPart, every: every, limit: limit}
	f.mu.Lock()
	f.rules = append(f.rules, r)
	f.mu.Unlock()
	return r
}

// Failed counts the requests the rule has failed.
func (r *FaultRule) Failed() int {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	return r.failed
}

// Stop ends the rule's faults and returns how many it injected.
func (r *FaultRule) Stop() int {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	for i, other := range r.f.rules {
		if other == r {
			r.f.rules = append(r.f.rules[:i], r.f.rules[i+1:]...)
			break
		}
	}
	return r.failed
}

// Wrap is a rest.Config transport wrapper.
func (f *Faults) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTrip(func(req *http.Request) (*http.Response, error) {
		var body []byte
		if req.Body != nil && req.GetBody != nil {
			if rc, err := req.GetBody(); err == nil {
				body, _ = io.ReadAll(rc)
				rc.Close()
			}
		}
		f.mu.Lock()
		fail := false
		for _, r := range f.rules {
			if req.Method != r.method || !strings.Contains(req.URL.Path, r.path) || !bytes.Contains(body, []byte(r.body)) {
				continue
			}
			r.seen++
			if (r.seen-1)%r.every == 0 && (r.limit == 0 || r.failed < r.limit) {
				r.failed++
				fail = true
			}
		}
		f.mu.Unlock()
		if fail {
			return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{"Content-Type": {"application/json"}},
				Body:    io.NopCloser(strings.NewReader(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected","reason":"ServiceUnavailable","code":503}`)),
				Request: req}, nil
		}
		return rt.RoundTrip(req)
	})
}
