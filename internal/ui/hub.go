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
	mu   sync.Mutex
	subs map[chan []byte]struct{}
	// The latest of what is not kept in the cache, for snapshots.
	leadership Leadership
	rates      Rates
	debug      []DebugMessage // newest last, at most keepDebug
}

const (
	keepDebug = 200
	subBuffer = 1024
)

func newHub() *hub { return &hub{subs: map[chan []byte]struct{}{}} }

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
			h.debug = h.debug[len(h.debug)-keepDebug:]
		}
	}
	for ch := range h.subs {
		select {
		case ch <- f:
		default:
			delete(h.subs, ch) // too slow: it reconnects
			close(ch)
		}
	}
}

func (h *hub) subscribe() chan []byte {
	ch := make(chan []byte, subBuffer)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch
}

func (h *hub) unsubscribe(ch chan []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
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
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	// Subscribed before the snapshot is read, so that nothing falls between.
	ch := s.hub.subscribe()
	defer s.hub.unsubscribe(ch)
	snap, err := s.snapshot(r.Context())
	if err != nil {
		writeAPIError(w, err)
		return
	}
	first, err := frame("snapshot", snap)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	_, _ = w.Write(first)
	flusher.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case f, ok := <-ch:
			if !ok {
				return
			}
			if _, err := w.Write(f); err != nil {
				return
			}
			// Whatever else is waiting goes in the same flush.
			for n := len(ch); n > 0; n-- {
				if f, ok = <-ch; !ok {
					return
				}
				_, _ = w.Write(f)
			}
			flusher.Flush()
		case <-ping.C:
			_, _ = w.Write([]byte(": ping\n\n"))
			flusher.Flush()
		}
	}
}
