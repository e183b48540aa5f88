package leader

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"
)

// Claim is one confirmation of leadership for leader-only work: the replica
// checked that it leads, found that it does until Until, and went on to act.
// Times are CLOCK_MONOTONIC nanoseconds, one clock for every process on the
// machine, so claims of several replicas can be laid side by side.
type Claim struct {
	Identity string `json:"identity"`
	// Term is the Lease's transition count for the term that allowed the work.
	Term int32 `json:"term"`
	// Action names the work ("signal", "status", "node ticker-1", ...).
	Action string `json:"action"`
	// Start is read before the check, Checked after it.
	Start   int64 `json:"start"`
	Checked int64 `json:"checked"`
	// Until is when the replica's leadership runs out unless renewed; the
	// claim covers [Start, Until], or less when the term ends sooner.
	Until int64 `json:"until"`
	// EndOfTerm marks the record written when the replica stops leading, by
	// stepping down or by losing the lease: the term's claims end there.
	EndOfTerm bool `json:"endOfTerm,omitempty"`
}

// Journal appends claims to a file, one JSON line each, written before the
// work they allow goes ahead. Each line is one write(2) on a file opened for
// appending: a line survives the process being killed right after, and
// several processes may share the file.
type Journal struct {
	mu sync.Mutex
	f  *os.File
}

// OpenJournal opens (creating it if needed) the journal at path.
func OpenJournal(path string) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("leader journal: %w", err)
	}
	return &Journal{f: f}, nil
}

// Close closes the file.
func (j *Journal) Close() error { return j.f.Close() }

func (j *Journal) record(c Claim) {
	line, _ := json.Marshal(c)
	line = append(line, '\n')
	j.mu.Lock()
	_, _ = j.f.Write(line)
	j.mu.Unlock()
}

func (j *Journal) endTerm(identity string, term int32) {
	now := int64(MonotonicNow())
	j.record(Claim{Identity: identity, Term: term, Action: "end of term", Start: now, Checked: now, Until: now, EndOfTerm: true})
}

// ReadClaims reads the claims of journal files; a torn last line (a process
// killed mid-write) is skipped.
func ReadClaims(paths ...string) ([]Claim, error) {
	var out []Claim
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		s := bufio.NewScanner(bytes.NewReader(data))
		s.Buffer(make([]byte, 64<<10), 1<<20)
		for s.Scan() {
			var c Claim
			if json.Unmarshal(s.Bytes(), &c) == nil && c.Identity != "" {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// LeaseRecord is one version of a Lease as a watcher saw it, at Seen
// (CLOCK_MONOTONIC nanoseconds).
type LeaseRecord struct {
	Holder      string
	Transitions int32
	Seen        int64
}

// Tenure is one holder's term as a Lease history shows it: from the first
// record of (Holder, Term) to the first record of anything else after it
// (End is zero while it lasts).
type Tenure struct {
	Holder     string
	Term       int32
	Begin, End int64
}

// Tenures folds a Lease history, in the order seen, into terms.
func Tenures(history []LeaseRecord) []Tenure {
	var out []Tenure
	for _, r := range history {
		if n := len(out); n > 0 && out[n-1].End == 0 && out[n-1].Holder == r.Holder && out[n-1].Term == r.Transitions {
			continue
		}
		if n := len(out); n > 0 && out[n-1].End == 0 {
			out[n-1].End = r.Seen
		}
		if r.Holder != "" {
			out = append(out, Tenure{Holder: r.Holder, Term: r.Transitions, Begin: r.Seen})
		}
	}
	return out
}

// CheckClaims proves, or disproves, that leader-only work never overlapped:
//   - no two claims of different replicas cover the same instant;
//   - every claim belongs to a term the Lease history shows that replica
//     holding, and ends before the history shows the next term begin.
//
// A claim ends at its Until, or at its term's end-of-term record when that
// comes first (a graceful step-down). It returns every violation found (none
// is a pass).
func CheckClaims(records []Claim, history []LeaseRecord) []error {
	var errs []error
	type key struct {
		id   string
		term int32
	}
	ends := map[key][]int64{}
	var claims []Claim
	for _, c := range records {
		if c.EndOfTerm {
			ends[key{c.Identity, c.Term}] = append(ends[key{c.Identity, c.Term}], c.Start)
		} else {
			claims = append(claims, c)
		}
	}
	for i, c := range claims {
		for _, e := range ends[key{c.Identity, c.Term}] {
			if e >= c.Start && e < c.Until {
				claims[i].Until = e
			}
		}
	}
	tenures := map[key]Tenure{}
	for _, t := range Tenures(history) {
		k := key{t.Holder, t.Term}
		if _, dup := tenures[k]; dup {
			errs = append(errs, fmt.Errorf("the Lease history shows term %d of %s twice", t.Term, t.Holder))
		}
		tenures[k] = t
	}
	for _, c := range claims {
		t, ok := tenures[key{c.Identity, c.Term}]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s claimed leadership in term %d for %q at %d, a term the Lease history never shows it holding", c.Identity, c.Term, c.Action, c.Start))
		case t.End != 0 && c.Until > t.End:
			errs = append(errs, fmt.Errorf("%s claimed term %d for %q until %d, after the Lease history shows the next term begin at %d", c.Identity, c.Term, c.Action, c.Until, t.End))
		}
		if c.Start > c.Checked || c.Checked > c.Until {
			errs = append(errs, fmt.Errorf("%s: claim for %q out of order: start %d, checked %d, until %d", c.Identity, c.Action, c.Start, c.Checked, c.Until))
		}
	}

	// Overlap across replicas: sweep the claims by start, keeping the claim
	// that reaches furthest for each replica seen so far.
	sorted := append([]Claim(nil), claims...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Start < sorted[j].Start })
	furthest := map[string]Claim{}
	for _, c := range sorted {
		for id, f := range furthest {
			if id != c.Identity && f.Until >= c.Start {
				errs = append(errs, fmt.Errorf("overlap: %s claimed %q until %d (term %d), %s claimed %q from %d (term %d)",
					id, f.Action, f.Until, f.Term, c.Identity, c.Action, c.Start, c.Term))
				delete(furthest, id) // report each overlap once
			}
		}
		if f, ok := furthest[c.Identity]; !ok || c.Until > f.Until {
			furthest[c.Identity] = c
		}
	}
	return errs
}
