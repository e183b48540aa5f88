// Package debugring keeps the last messages debug nodes received in this
// process, for the page of `tinymod ui` to show live: replicas serve them
// beside their metrics (see Handler), so that no replica writes to the API
// server per message.
package debugring

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Size is how many entries a ring keeps.
const Size = 256

// MaxData is how many bytes of a message's JSON an entry keeps at most.
const MaxData = 16 << 10

// Entry is one message a debug node received.
type Entry struct {
	Seq  uint64          `json:"seq"`
	Node string          `json:"node"`
	At   time.Time       `json:"at"`
	Data json.RawMessage `json:"data"`
}

// Ring is a bounded log of entries, safe for concurrent use.
type Ring struct {
	mu      sync.Mutex
	entries [Size]Entry
	next    uint64 // the seq of the next entry; entries hold seqs [next-Size, next)
	epoch   string // made on first use
}

// Default is the process's ring, which the debug component fills.
var Default = &Ring{next: 1}

// Add records a message node received, at most MaxData bytes of it (see
// Bound).
func (r *Ring) Add(node string, data json.RawMessage) {
	data = Bound(data)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	r.entries[r.next%Size] = Entry{Seq: r.next, Node: node, At: time.Now(), Data: data}
	r.next++
}

// After returns the entries after seq, oldest first, and the seq to ask
// after next time. Entries that fell out of the ring are skipped.
func (r *Ring) After(seq uint64) ([]Entry, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.after(seq)
}

// Epoch names the ring: the ring of another process, whose seqs start
// again at 1, has another.
func (r *Ring) Epoch() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	return r.epoch
}

// Page is the entries after seq, as Handler serves them.
func (r *Ring) Page(seq uint64) Page {
	r.mu.Lock()
	defer r.mu.Unlock()
	entries, last := r.after(seq)
	if entries == nil {
		entries = []Entry{}
	}
	return Page{Entries: entries, Last: last, Epoch: r.epoch}
}

func (r *Ring) init() {
	if r.next == 0 {
		r.next = 1
	}
	if r.epoch == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		r.epoch = hex.EncodeToString(b)
	}
}

func (r *Ring) after(seq uint64) ([]Entry, uint64) {
	r.init()
	first := seq + 1
	if r.next > Size && first < r.next-Size {
		first = r.next - Size
	}
	if first == 0 {
		first = 1
	}
	var out []Entry
	for s := first; s < r.next; s++ {
		out = append(out, r.entries[s%Size])
	}
	return out, r.next - 1
}

// Bound returns data as it is when it is JSON of at most MaxData bytes,
// else a JSON string of its beginning that says how big it was.
func Bound(data json.RawMessage) json.RawMessage {
	if len(data) <= MaxData && json.Valid(data) {
		return data
	}
	// Escaping at most doubles the beginning kept (no HTML escapes).
	n := min(len(data), MaxData/2-64)
	for n > 0 && n < len(data) && !utf8.RuneStart(data[n]) {
		n--
	}
	text := strings.ToValidUTF8(string(data[:n]), "\uFFFD")
	if n < len(data) {
		text += fmt.Sprintf("… (%d bytes)", len(data))
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(text)
	return json.RawMessage(bytes.TrimSpace(b.Bytes()))
}

// Path is where replicas serve their ring, on the metrics address.
const Path = "/tinymod/debug"

// Page is what Handler serves: the entries after the asked seq.
type Page struct {
	Entries []Entry `json:"entries"`
	// Last is the seq to ask after next time.
	Last uint64 `json:"last"`
	// Epoch is the ring's (Ring.Epoch). When it changes, the process
	// serving the ring was restarted and its seqs started again: ask after 0.
	Epoch string `json:"epoch,omitempty"`
}

// Handler serves r's entries after ?after=SEQ as a Page.
func Handler(r *Ring) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		after, _ := strconv.ParseUint(req.URL.Query().Get("after"), 10, 64)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Page(after))
	})
}
