package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// hub fans events out to the pages that listen. A page that cannot keep
// up is dropped; its EventSource reconnects and starts from a snapshot.
type hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
	// The latest of what is not kept in the cache, for snapshots.
	leadership Leadership
	rates      Rates
	debug      []DebugMessage // newest last, at most keepDebug
}

const (
	keepDebug = 200
	// A page with more than this many bytes, or frames, of events waiting
	// for it is dropped (it reconnects and starts from a snapshot), so that
	// a tab that stopped reading holds no more than this.
	maxPendingBytes  = 8 << 20
	maxPendingFrames = 4096
)

// eventWriteTimeout bounds each write to a page's event stream: a page
// that reads nothing for this long is let go, even when the connection
// stays open.
var eventWriteTimeout = 10 * time.Second

// subscriber is one page's queue of frames.
type subscriber struct {
	wake    chan struct{} // a frame was queued
	done    chan struct{} // closed when dropped
	pending [][]byte
	bytes   int
}

func newHub() *hub { return &hub{subs: map[*subscriber]struct{}{}} }

// frame is one server-sent event.
func frame(name string, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "event: %s\ndata: %s\n\n", name, data), nil
}

func (h *hub) publish(name string, v any) {
	f, err := frame(name, v)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch x := v.(type) {
	case Leadership:
		h.leadership = x
	case Rates:
		h.rates = x
	case DebugMessage:
		h.debug = append(h.debug, x)
		if len(h.debug) > keepDebug {
			h.debug = append([]DebugMessage(nil), h.debug[len(h.debug)-keepDebug:]...)
		}
	}
	for sub := range h.subs {
		if len(sub.pending) > 0 && (sub.bytes+len(f) > maxPendingBytes || len(sub.pending) >= maxPendingFrames) {
			h.dropLocked(sub) // too slow: it reconnects
			continue
		}
		sub.pending = append(sub.pending, f)
		sub.bytes += len(f)
		select {
		case sub.wake <- struct{}{}:
		default:
		}
	}
}

// subscribe adds a page, and returns with it what snapshots take from the
// hub as it stood then: every later change is queued for the page, none
// before is.
func (h *hub) subscribe() (*subscriber, Leadership, Rates, []DebugMessage) {
	sub := &subscriber{wake: make(chan struct{}, 1), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(sub.done)
	} else {
		h.subs[sub] = struct{}{}
	}
	return sub, h.leadership, h.rates, append([]DebugMessage(nil), h.debug...)
}

// take returns the frames queued for sub, oldest first.
func (h *hub) take(sub *subscriber) [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := sub.pending
	sub.pending, sub.bytes = nil, 0
	return out
}

func (h *hub) unsubscribe(sub *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(sub)
}

func (h *hub) dropLocked(sub *subscriber) {
	if _, ok := h.subs[sub]; ok {
		delete(h.subs, sub)
		sub.pending, sub.bytes = nil, 0
		close(sub.done)
	}
}

// closeAll drops every page, now and later.
func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for sub := range h.subs {
		h.dropLocked(sub)
	}
}

// latest returns what snapshots take from the hub.
func (h *hub) latest() (Leadership, Rates, []DebugMessage) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.leadership, h.rates, append([]DebugMessage(nil), h.debug...)
}

// events streams the state: a snapshot, then every change.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if _, ok := w.(http.Flusher); !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	// Subscribed before the snapshot is read, so that nothing falls
	// between; what the hub keeps is taken at the same moment, so that
	// nothing is in both.
	sub, leadership, rates, debug := s.hub.subscribe()
	defer s.hub.unsubscribe(sub)
	first, err := s.snapshot(r.Context(), leadership, rates, debug, func(snap *Snapshot) ([]byte, error) { return frame("snapshot", snap) })
	if err != nil {
		writeAPIError(w, err)
		return
	}
	rc := http.NewResponseController(w)
	// The connection may serve other requests after this one.
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	// write sends frames, and fails when the page has not taken them
	// within eventWriteTimeout.
	write := func(frames ...[]byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		for _, f := range frames {
			if _, err := w.Write(f); err != nil {
				return false
			}
		}
		return rc.Flush() == nil
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	if !write(first) {
		return
	}
	first = nil
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.done:
			return
		case <-sub.wake:
			if !write(s.hub.take(sub)...) {
				return
			}
		case <-ping.C:
			if !write([]byte(": ping\n\n")) {
				return
			}
		}
	}
}
