package controlplanetest

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Hang holds the API requests it is told to, as a hung API server does: until
// it answers again, or until the request's own context ends. Put it in front
// of a client with rest.Config.Wrap(h.Wrap).
type Hang struct {
	mu      sync.Mutex
	match   func(*http.Request) bool
	release chan struct{}
	held    int      // requests held since the last Hold
	gaveUp  []GiveUp // the held requests whose callers gave up, since the last Hold
}

// GiveUp is a held request whose caller stopped waiting, and after how long.
type GiveUp struct {
	Request string // method and path
	Waited  time.Duration
}

// Hold holds the requests match selects, from now until Answer.
func (h *Hang) Hold(match func(*http.Request) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.match, h.release, h.held, h.gaveUp = match, make(chan struct{}), 0, nil
}

// Answer lets the held requests, and all later ones, through.
func (h *Hang) Answer() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.match != nil {
		close(h.release)
		h.match = nil
	}
}

// Held counts the requests held since the last Hold.
func (h *Hang) Held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held
}

// GivenUp lists the held requests whose callers gave up since the last Hold.
func (h *Hang) GivenUp() []GiveUp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]GiveUp(nil), h.gaveUp...)
}

// Wrap is a rest.Config transport wrapper.
func (h *Hang) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTrip(func(req *http.Request) (*http.Response, error) {
		h.mu.Lock()
		release, holding := h.release, h.match != nil && h.match(req)
		if holding {
			h.held++
		}
		h.mu.Unlock()
		if holding {
			start := time.Now()
			select {
			case <-release:
			case <-req.Context().Done():
				h.mu.Lock()
				if h.release == release {
					h.gaveUp = append(h.gaveUp, GiveUp{req.Method + " " + req.URL.Path, time.Since(start)})
				}
				h.mu.Unlock()
				return nil, req.Context().Err()
			}
		}
		return rt.RoundTrip(req)
	})
}

// Returns runs call and gives its error, or fails the test if call has not
// returned within limit; then it answers, so that call can end. It reports
// whether call returned in time.
func (h *Hang) Returns(t testing.TB, limit time.Duration, what string, call func() error) (bool, error) {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- call() }()
	select {
	case err := <-done:
		t.Logf("%s: returned after %s: %v", what, time.Since(start).Round(time.Millisecond), err)
		return true, err
	case <-time.After(limit):
	}
	h.Answer()
	select {
	case err := <-done:
		t.Errorf("%s: still blocked %s after the API server stopped answering (answered, it returned %v)", what, limit, err)
	case <-time.After(time.Minute):
		t.Errorf("%s: still blocked %s after the API server stopped answering, and a minute after it answered again", what, limit)
	}
	return false, nil
}

// Every selects every request.
func Every(*http.Request) bool { return true }

// Requests selects the requests of method whose path holds pathPart.
func Requests(method, pathPart string) func(*http.Request) bool {
	return func(req *http.Request) bool {
		return req.Method == method && strings.Contains(req.URL.Path, pathPart)
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
