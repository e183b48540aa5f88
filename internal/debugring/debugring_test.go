package debugring

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRingKeepsTheLastAndPagesOn(t *testing.T) {
	r := &Ring{}
	if got, last := r.After(0); len(got) != 0 || last != 0 {
		t.Fatalf("empty ring: %v, %d", got, last)
	}
	for i := range Size + 10 {
		r.Add(fmt.Sprintf("n%d", i), json.RawMessage(fmt.Sprint(i)))
	}
	got, last := r.After(0)
	if len(got) != Size || got[0].Seq != 11 || got[Size-1].Seq != Size+10 || last != Size+10 {
		t.Fatalf("after 0: %d entries, first %d, last %d, next %d", len(got), got[0].Seq, got[len(got)-1].Seq, last)
	}
	if got[0].Node != "n10" || string(got[0].Data) != "10" {
		t.Errorf("first entry %+v", got[0])
	}
	r.Add("x", json.RawMessage(`{"a":1}`))
	more, last2 := r.After(last)
	if len(more) != 1 || more[0].Node != "x" || last2 != last+1 {
		t.Errorf("after %d: %+v, %d", last, more, last2)
	}
	if none, l := r.After(last2); len(none) != 0 || l != last2 {
		t.Errorf("nothing new: %+v, %d", none, l)
	}
}

func TestHandler(t *testing.T) {
	r := &Ring{}
	r.Add("d", json.RawMessage(`"hi"`))
	rec := httptest.NewRecorder()
	Handler(r).ServeHTTP(rec, httptest.NewRequest("GET", Path+"?after=0", nil))
	var p Page
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Entries) != 1 || p.Entries[0].Node != "d" || p.Last != 1 || p.Epoch == "" || p.Epoch != r.Epoch() {
		t.Errorf("page %+v", p)
	}
}

// TestEpochTellsProcessesApart: each ring has its own epoch, the same for
// as long as it lives, so a reader tells a restarted process's ring (seqs
// from 1 again) from the one it read before.
func TestEpochTellsProcessesApart(t *testing.T) {
	a, b := &Ring{}, &Ring{}
	ea := a.Epoch()
	a.Add("x", json.RawMessage(`1`))
	if ea == "" || a.Epoch() != ea || a.Page(0).Epoch != ea {
		t.Errorf("epoch of a: %q, then %q, in its page %q", ea, a.Epoch(), a.Page(0).Epoch)
	}
	if b.Epoch() == ea {
		t.Errorf("two rings share the epoch %q", ea)
	}
}

// TestAddBoundsData: a debug node may receive messages of any size; the
// ring keeps at most MaxData bytes of each, as a JSON string that says how
// big it was, so that 256 big messages do not fill a replica's memory.
func TestAddBoundsData(t *testing.T) {
	r := &Ring{}
	big := json.RawMessage(`{"blob":"` + strings.Repeat("x", 1<<20) + `"}`)
	r.Add("d", big)
	r.Add("d", json.RawMessage(`{"small":true}`))
	got, _ := r.After(0)
	if n := len(got[0].Data); n > MaxData+100 {
		t.Errorf("a 1 MiB message is kept as %d bytes", n)
	}
	var s string
	if err := json.Unmarshal(got[0].Data, &s); err != nil || !strings.HasPrefix(s, `{"blob":"xxx`) || !strings.Contains(s, "1048587 bytes") {
		t.Errorf("a bounded message is not a JSON string that begins as it did and says its size: %.200s (%v)", got[0].Data, err)
	}
	if string(got[1].Data) != `{"small":true}` {
		t.Errorf("a small message changed: %s", got[1].Data)
	}
	// What is not JSON is kept as a string, so that the page is JSON.
	r.Add("d", json.RawMessage(`not json`))
	rec := httptest.NewRecorder()
	Handler(r).ServeHTTP(rec, httptest.NewRequest("GET", Path+"?after=2", nil))
	var p Page
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || len(p.Entries) != 1 || string(p.Entries[0].Data) != `"not json"` {
		t.Errorf("a page with a message that is not JSON: %s (%v)", rec.Body, err)
	}
}
