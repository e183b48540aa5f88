package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	tea "github.com/charmbracelet/bubbletea"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tinymod/tinymod/api/v1alpha1"
)

// This file holds what dev's view shows and how it fits a terminal. The
// truths it shows (who leads, which replica is gone, which signals were
// sent) are small functions of what was read, so that another view can
// reuse them.

// leaseState is what a Lease says at a given moment.
type leaseState struct {
	// Holder holds the Lease: its holderIdentity, while the Lease is valid
	// (renewTime + leaseDurationSeconds is after the moment). Empty
	// otherwise.
	Holder string
	// Why there is no Holder: "no lease", "released" or "lease expired".
	Why string
	// Named is the holderIdentity the Lease names, valid or not.
	Named string
	// Acquired is when Named acquired the Lease; Expires is when the Lease
	// runs out unless renewed. Both zero when the Lease does not say.
	Acquired, Expires time.Time
}

// leaseAt reads l (nil: there is no Lease) at now.
func leaseAt(l *coordinationv1.Lease, now time.Time) leaseState {
	if l == nil {
		return leaseState{Why: "no lease"}
	}
	var s leaseState
	if l.Spec.HolderIdentity != nil {
		s.Named = *l.Spec.HolderIdentity
	}
	if l.Spec.AcquireTime != nil {
		s.Acquired = l.Spec.AcquireTime.Time
	}
	if l.Spec.RenewTime != nil && l.Spec.LeaseDurationSeconds != nil {
		s.Expires = l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)
	}
	switch {
	case s.Named == "":
		s.Why = "released"
	case s.Expires.IsZero() || !now.Before(s.Expires):
		s.Why = "lease expired"
	default:
		s.Holder = s.Named
	}
	return s
}

// processAlive says whether a replica's process still runs: exited is
// closed once it has exited (nil: not known to have exited).
func processAlive(exited <-chan struct{}) bool {
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// replicaRole is what the view says of a replica: "gone" once its process
// has exited, whatever a Lease still says; "LEADER" while it holds the
// valid leader Lease (leader is leaseState.Holder); else "reader".
func replicaRole(id string, alive bool, leader string) string {
	switch {
	case !alive:
		return "gone"
	case id == leader && leader != "":
		return "LEADER"
	}
	return "reader"
}

// leaderLine is the module line: who leads by the Lease, and whether that
// replica's process is still there.
func leaderLine(module string, s leaseState, holderAlive bool, now time.Time) string {
	if s.Holder == "" {
		line := fmt.Sprintf("module %s: leader none (%s)", module, s.Why)
		if s.Named != "" {
			line += ", last held by " + s.Named
		}
		return line
	}
	line := fmt.Sprintf("module %s: leader %s", module, s.Holder)
	if !s.Acquired.IsZero() {
		line += " for " + age(now.Sub(s.Acquired))
	}
	if !holderAlive {
		line += fmt.Sprintf(", but its process is gone (the lease runs out in %s)", age(s.Expires.Sub(now)))
	}
	return line
}

// signalRecord is a TinySignal as dev last saw it.
type signalRecord struct {
	uid           types.UID
	node, port    string
	created, seen time.Time // seen: first seen
	seq           uint64    // the order first seen
	phase         v1alpha1.SignalPhase
	attempts      int32
	lastError     string
	deleted       bool
}

// signalHistory keeps the newest TinySignals seen, newest first, whether
// they still exist or not: a delivered signal is deleted at once, and a
// press of a button would otherwise never be seen.
type signalHistory struct {
	// Max is how many are kept; 0 keeps 5.
	Max  int
	recs []signalRecord
	seq  uint64
}

// observe records sig as seen at now; deleted when it was deleted.
func (h *signalHistory) observe(sig *v1alpha1.TinySignal, deleted bool, now time.Time) {
	i := h.find(sig.UID)
	if i < 0 {
		h.seq++
		h.recs = append(h.recs, signalRecord{uid: sig.UID, seen: now, seq: h.seq})
		i = len(h.recs) - 1
	}
	r := &h.recs[i]
	r.node, r.port = sig.Spec.Node, sig.Spec.Port
	r.created = sig.CreationTimestamp.Time
	r.phase, r.attempts, r.lastError = sig.Status.Phase, sig.Status.Attempts, sig.Status.LastError
	if deleted {
		r.deleted = true
	}
	h.trim()
}

// sync records a full list of the signals, read from listedAt on: each is
// observed, and one seen before listedAt that the list lacks was deleted
// meanwhile.
func (h *signalHistory) sync(items []v1alpha1.TinySignal, listedAt, now time.Time) {
	present := map[types.UID]bool{}
	for i := range items {
		present[items[i].UID] = true
		h.observe(&items[i], false, now)
	}
	for i := range h.recs {
		r := &h.recs[i]
		if !present[r.uid] && !r.deleted && r.seen.Before(listedAt) {
			r.deleted = true
		}
	}
}

func (h *signalHistory) find(uid types.UID) int {
	for i := range h.recs {
		if h.recs[i].uid == uid {
			return i
		}
	}
	return -1
}

// trim orders the records newest first (by creation, then by when first
// seen: creation times have whole seconds) and keeps Max.
func (h *signalHistory) trim() {
	sort.SliceStable(h.recs, func(i, j int) bool {
		a, b := h.recs[i], h.recs[j]
		if !a.created.Equal(b.created) {
			return a.created.After(b.created)
		}
		return a.seq > b.seq
	})
	n := h.Max
	if n <= 0 {
		n = 5
	}
	if len(h.recs) > n {
		h.recs = h.recs[:n]
	}
}

// lines are the view's lines for the signals, newest first.
func (h *signalHistory) lines() []string {
	out := make([]string, 0, len(h.recs))
	for _, r := range h.recs {
		line := fmt.Sprintf("%s  %s %s  %s", r.created.Format("15:04:05"), r.node, r.port, r.phaseShown())
		if r.attempts > 1 {
			line += fmt.Sprintf(" after %d attempts", r.attempts)
		}
		if r.lastError != "" {
			line += "  last error: " + truncate(r.lastError, 70)
		}
		out = append(out, line)
	}
	return out
}

// phaseShown is the signal's phase; a deleted signal was delivered (the
// leader deletes a signal once delivered and keeps a failed one for a
// while: one deleted by hand reads the same).
func (r signalRecord) phaseShown() string {
	switch {
	case r.deleted && r.phase == v1alpha1.SignalFailed:
		return "Failed, since deleted"
	case r.deleted:
		return "Delivered"
	case r.phase == "":
		return string(v1alpha1.SignalPending)
	}
	return string(r.phase)
}

// devScreen is one refresh of dev's view: head lines (the module, its
// leader and its replicas), always shown, and sections below them, cut to
// fit the terminal.
type devScreen struct {
	head     []string
	sections []devSection
}

// devSection is a titled list.
type devSection struct {
	title string
	lines []string
	// tail keeps the last lines when the section is cut (the newest of a
	// log), else the first.
	tail bool
}

// String is the whole screen, for plain output.
func (s devScreen) String() string {
	var b strings.Builder
	for _, l := range fitScreen(s, 0, 0) {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// fitScreen lays s out in at most height lines (height <= 0: no limit):
// the head first, whole (wrapped at its commas to width, if width > 0; cut
// only if the head alone is as tall as height), then the sections, each cut
// to its share of the lines left, saying how many of its lines were left
// out.
func fitScreen(s devScreen, width, height int) []string {
	var head []string
	for _, l := range s.head {
		head = append(head, wrapList(l, width)...)
	}
	if height > 0 && len(head) >= height {
		return head[:height]
	}
	budget := -1
	if height > 0 {
		budget = height - len(head)
	}
	return append(head, fitSections(s.sections, budget)...)
}

// fitSections renders the sections in at most budget lines (< 0: no limit).
// A section takes its title line and the lines shown; the title of a cut
// one says how many were shown and how many left out. Lines are dealt to
// the sections in turn, one each per round, so that a long list does not
// crowd out the others; when not even the titles fit, one line says how
// much was left out.
func fitSections(sections []devSection, budget int) []string {
	var nonEmpty []int
	total := 0
	for i, s := range sections {
		if len(s.lines) > 0 {
			nonEmpty = append(nonEmpty, i)
			total += 1 + len(s.lines)
		}
	}
	if budget >= 0 && budget < len(nonEmpty) {
		if budget == 0 {
			return nil
		}
		return []string{fmt.Sprintf("… %d more lines left out", total)}
	}
	shown := make([]int, len(sections))
	used := len(nonEmpty) // the titles
	for dealt := true; dealt; {
		dealt = false
		for _, i := range nonEmpty {
			if shown[i] == len(sections[i].lines) || (budget >= 0 && used == budget) {
				continue
			}
			shown[i]++
			used++
			dealt = true
		}
	}
	var out []string
	for _, i := range nonEmpty {
		s, k := sections[i], shown[i]
		n := len(s.lines)
		switch {
		case k == n:
			out = append(out, s.title)
			for _, l := range s.lines {
				out = append(out, "  "+l)
			}
		case s.tail:
			out = append(out, fmt.Sprintf("%s newest %d of %d shown, %d more left out", s.title, k, n, n-k))
			for _, l := range s.lines[n-k:] {
				out = append(out, "  "+l)
			}
		default:
			out = append(out, fmt.Sprintf("%s first %d of %d shown, %d more left out", s.title, k, n, n-k))
			for _, l := range s.lines[:k] {
				out = append(out, "  "+l)
			}
		}
	}
	return out
}

// wrapList breaks a line wider than width (> 0) after its commas, the
// following lines indented, so that a long list of replicas stays whole.
func wrapList(line string, width int) []string {
	if width <= 0 || utf8.RuneCountInString(line) <= width {
		return []string{line}
	}
	const indent = "    "
	parts := strings.SplitAfter(line, ", ")
	var out []string
	cur := ""
	for _, p := range parts {
		if cur != "" && utf8.RuneCountInString(cur+strings.TrimRight(p, " ")) > width {
			out = append(out, strings.TrimRight(cur, " "))
			cur = indent
		}
		cur += p
	}
	return append(out, strings.TrimRight(cur, " "))
}

// devModel is the terminal view.
type devModel struct {
	d             *devRun
	refresh       time.Duration
	screen        devScreen
	width, height int
}

type refreshMsg devScreen

const devFooter = "(q or Ctrl-C to stop)"

func (m *devModel) fetch() tea.Cmd {
	return func() tea.Msg { return refreshMsg(m.d.screen(context.Background(), true)) }
}

func (m *devModel) Init() tea.Cmd { return m.fetch() }

func (m *devModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch msg.String() {
		case "ctrl+c", "q":
			return m, tea.Quit
		}
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case refreshMsg:
		m.screen = devScreen(msg)
		return m, tea.Tick(m.refresh, func(time.Time) tea.Msg { return m.fetch()() })
	}
	return m, nil
}

// View fits the screen and the footer in the terminal's height: the
// renderer would otherwise drop the top lines, the leader's among them.
func (m *devModel) View() string {
	if m.height <= 0 {
		return m.screen.String() + devFooter
	}
	lines := append(fitScreen(m.screen, m.width, m.height-1), devFooter)
	if len(lines) > m.height {
		lines = lines[:m.height]
	}
	return strings.Join(lines, "\n")
}
