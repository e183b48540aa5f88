package chaos

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/test/bench/benchutil"
	"github.com/tinymod/tinymod/test/e2e/harness"
)

// injection is one panic the test causes in component code of module beta.
type injection struct {
	node, component string
	// where the component panics, as the contract lists it.
	where string
	// settings of the node; signal, if set, is sent to the node once it runs.
	settings       string
	port, data     string
	deleteAfterRun bool // Destroy: the node is deleted once it runs
	// swapTo, if set, replaces the node's component once it runs (Destroy).
	swapTo string
	// armedBy, if set, is a faulty node created first, whose settings make
	// the component panic; the node is created once it has run.
	armedBy string
}

// injections come in rounds, each checked before the next begins: a panic
// that the runtime does not contain can stop a whole module, and the rounds
// keep it from hiding how the others fare.
var injections = [][]injection{{
	{node: "f-settings", component: "faulty", where: "Handle on _settings", settings: `{"panicIn": ["settings"]}`},
	{node: "f-reconcile", component: "faulty", where: "Handle on _reconcile", settings: `{"panicIn": ["reconcile"]}`},
	{node: "f-control", component: "faulty", where: "Handle on _control", port: v1alpha1.ControlPort, data: `{"panic": true}`},
	{node: "f-business", component: "faulty", where: "Handle on a business port (from a TinySignal)", port: "in", data: `{"panic": true}`},
	{node: "f-destroy", component: "faulty", where: "Destroy (the node deleted)", settings: `{"panicIn": ["destroy"]}`, deleteAfterRun: true},
	{node: "f-swap", component: "faulty", where: "Destroy (the node's component replaced)", settings: `{"panicIn": ["destroy"]}`, swapTo: "probe"},
}, {
	{node: "f-decode", component: "faulty", where: "decoding settings (UnmarshalJSON)", settings: `{"fuse": "blow"}`},
	{node: "f-message", component: "faulty", where: "decoding a message (UnmarshalJSON)", port: "in", data: `{"fuse": "blow"}`},
	{node: "f-ports", component: "faulty", where: "Ports", settings: `{"panicIn": ["ports"]}`},
}, {
	{node: "f-status", component: "faulty", where: "a status callback", port: v1alpha1.ControlPort, data: `{"panicInStatus": true}`},
	{node: "f-instance", component: "faulty-instance", where: "Instance (armed by the settings of node f-arm)", armedBy: "f-arm"},
}}

// panicReport is what became of the injected panics.
type panicReport struct {
	injected, contained int
	failures            []string
	pidsKept            bool
}

// injectPanics runs the rounds of injections in module beta and checks the
// contract: every replica lives on with the same pid, each panic is
// recovered into the node's status.error and an Event, and the other nodes
// of both modules keep working. Each round's nodes are deleted before the
// next, so that a round that stops beta does not hide how the next fares.
func (w *world) injectPanics(alpha, beta *fleet) panicReport {
	t := w.t
	rep := panicReport{pidsKept: true}
	for round, ins := range injections {
		pids := map[*proc]int{}
		for _, f := range w.mods {
			for _, p := range f.replicas() {
				pids[p] = p.Cmd.Process.Pid
			}
		}
		start := time.Now()
		w.injectRound(beta, ins, &rep)
		working := w.checkStillWorking(alpha, beta, fmt.Sprintf("r%d", round+1), start)
		var died []string
		for p, pid := range pids {
			if !p.Alive() || p.Cmd.Process.Pid != pid {
				died = append(died, p.ID)
				delete(pids, p)
			}
		}
		sort.Strings(died)
		if len(died) > 0 {
			rep.pidsKept = false
			t.Errorf("panic round %d: replicas %v did not survive (see their crashes above)", round+1, died)
		}
		t.Logf("panic round %d (%d injections) took %s", round+1, len(ins), time.Since(start).Round(time.Millisecond))
		w.removeNodes(ins)
		if !working {
			// Let beta come back without the round's nodes before the next.
			w.checkStillWorking(alpha, beta, fmt.Sprintf("r%d-removed", round+1), time.Now())
		}
	}
	return rep
}

// removeNodes deletes a round's nodes; a node that its module's leader does
// not release in time loses its finalizers, so that the next round starts
// clean.
func (w *world) removeNodes(ins []injection) {
	var names []string
	for _, in := range ins {
		names = append(names, in.node)
		if in.armedBy != "" {
			names = append(names, in.armedBy)
		}
	}
	for _, name := range names {
		n := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.ns}}
		if err := w.env.Client.Delete(w.ctx, n); err != nil && !apierrors.IsNotFound(err) {
			w.t.Error(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, name := range names {
		for {
			n := &v1alpha1.TinyNode{}
			err := w.env.Client.Get(w.ctx, client.ObjectKey{Namespace: w.ns, Name: name}, n)
			if apierrors.IsNotFound(err) {
				break
			}
			if err == nil && time.Now().After(deadline) && len(n.Finalizers) > 0 {
				n.Finalizers = nil
				_ = w.env.Client.Update(w.ctx, n)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// checkStillWorking sends both modules signals and checks that they are
// delivered, that alpha still ticks since since, and that beta still handles
// alpha's messages; it reports whether all that happened in time.
func (w *world) checkStillWorking(alpha, beta *fleet, tag string, since time.Time) bool {
	const n = 3
	for i := range n {
		for _, prefix := range []string{"a", "b"} {
			w.createSignal(fmt.Sprintf("%s-after-%s-%d", prefix, tag, i), prefix+"-sink", "in", fmt.Sprintf(`{"after": "%s-%d"}`, tag, i))
		}
	}
	handledBy, handled := map[*proc]float64{}, false
	return wait(w.t, 60*time.Second, func() error {
		var problems []string
		for _, c := range []struct {
			f    *fleet
			node string
		}{{alpha, "a-sink"}, {beta, "b-sink"}} {
			got := map[string]bool{}
			for _, p := range c.f.incarnations() {
				for _, l := range harness.Decode[probeLine](p.Process, "probe") {
					if l.Node == c.node && strings.Contains(string(l.Data), `"`+tag+`-`) {
						got[string(l.Data)] = true
					}
				}
			}
			if len(got) < n {
				problems = append(problems, fmt.Sprintf("%s: %d of %d signals sent after panic round %s delivered", c.f.name, len(got), n, tag))
			}
		}
		if l := alpha.holder(); l == nil {
			problems = append(problems, "alpha has no leader")
		} else {
			ticked := false
			for _, dl := range l.Lines("debug") {
				ticked = ticked || dl.Node == "tick-sink" && dl.Time.After(since)
			}
			if !ticked {
				problems = append(problems, "alpha's leader "+l.ID+" has not ticked since the panics")
			}
		}
		for _, p := range beta.replicas() {
			if m, err := benchutil.Scrape(p.metrics); err == nil {
				ok := m[`tinymod_messages_total{node="b-hold",port="in",result="ok"}`]
				if last, seen := handledBy[p]; seen && ok > last {
					handled = true
				}
				handledBy[p] = ok
			}
		}
		if !handled {
			problems = append(problems, "no replica of beta handles alpha's messages")
		}
		if len(problems) == 0 {
			return nil
		}
		if list, err := w.listSignals(w.ctx); err == nil {
			for _, name := range keys(list) {
				if s := list[name]; strings.Contains(name, "-after-"+tag+"-") {
					problems = append(problems, fmt.Sprintf("%s is %q after %d attempts (%s)", name, s.Status.Phase, s.Status.Attempts, s.Status.LastError))
				}
			}
		}
		return fmt.Errorf("the other nodes, panic round %s: %s", tag, strings.Join(problems, "; "))
	})
}

// injectRound creates a round's faulty nodes, sends the signals that make
// them panic and deletes the node whose Destroy panics, once each runs; then
// waits for each panic to show as the contract says.
func (w *world) injectRound(beta *fleet, ins []injection, rep *panicReport) {
	t := w.t
	for _, in := range ins {
		if in.armedBy == "" {
			continue
		}
		arm := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: in.armedBy, Namespace: w.ns},
			Spec: v1alpha1.TinyNodeSpec{Module: beta.name, Component: "faulty",
				Ports: []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: []byte(`{"armInstance": true}`)}}}}}
		if err := w.env.Client.Create(w.ctx, arm); err != nil {
			t.Fatal(err)
		}
		wait(t, w.p.panicWait, func() error {
			if err := w.env.Client.Get(w.ctx, client.ObjectKeyFromObject(arm), arm); err != nil {
				return err
			}
			if len(arm.Status.Conditions) == 0 {
				return fmt.Errorf("node %s has no status yet (not run by beta's leader)", arm.Name)
			}
			return nil
		})
	}
	for _, in := range ins {
		n := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: in.node, Namespace: w.ns},
			Spec: v1alpha1.TinyNodeSpec{Module: beta.name, Component: in.component}}
		if in.settings != "" {
			n.Spec.Ports = []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: []byte(in.settings)}}}
		}
		if err := w.env.Client.Create(w.ctx, n); err != nil {
			t.Fatal(err)
		}
		rep.injected++
	}
	// Signals and the delete wait for their node to run on the leader (its
	// status written), so that each panics where it is meant to.
	pending := map[string]injection{}
	for _, in := range ins {
		if in.port != "" || in.deleteAfterRun || in.swapTo != "" {
			pending[in.node] = in
		}
	}
	wait(t, w.p.panicWait, func() error {
		for name, in := range pending {
			n := &v1alpha1.TinyNode{}
			if err := w.env.Client.Get(w.ctx, client.ObjectKey{Namespace: w.ns, Name: name}, n); err != nil {
				return err
			}
			if len(n.Status.Conditions) == 0 {
				continue
			}
			if in.port != "" {
				w.createSignal("panic-"+name, name, in.port, in.data)
			}
			if in.deleteAfterRun {
				if err := w.env.Client.Delete(w.ctx, n); err != nil && !apierrors.IsNotFound(err) {
					return err
				}
			}
			if in.swapTo != "" {
				n.Spec.Component = in.swapTo
				if err := w.env.Client.Update(w.ctx, n); err != nil {
					return err // a conflict: read it again next time
				}
			}
			delete(pending, name)
		}
		if len(pending) > 0 {
			return fmt.Errorf("panic injection: nodes %v have no status yet (not run by beta's leader): nothing sent to them", keys(pending))
		}
		return nil
	})

	// Each panic ends as the node's status.error and an Event; give the
	// Event recorder a retry (its writes go through the proxies too).
	results := map[string]string{}
	deadline := time.Now().Add(w.p.panicWait)
	for {
		events, err := w.cs.CoreV1().Events(w.ns).List(w.ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range ins {
			results[in.node] = w.panicOutcome(in, events.Items)
		}
		if allEmpty(results) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, in := range ins {
		if res := results[in.node]; res != "" {
			rep.failures = append(rep.failures, fmt.Sprintf("%s (node %s): %s", in.where, in.node, res))
			t.Errorf("a panic in %s (node %s) did not become the node's status.error and an Event within %s: %s", in.where, in.node, w.p.panicWait, res)
		} else {
			rep.contained++
		}
	}
}

// panicOutcome says what is missing from a panic's aftermath ("" when
// nothing is): the node's status.error naming a panic (not for a deleted
// node) and an Event on the node naming one.
func (w *world) panicOutcome(in injection, events []corev1.Event) string {
	var missing []string
	if !in.deleteAfterRun {
		n := &v1alpha1.TinyNode{}
		if err := w.env.Client.Get(w.ctx, client.ObjectKey{Namespace: w.ns, Name: in.node}, n); err != nil {
			return err.Error()
		}
		if !strings.Contains(strings.ToLower(n.Status.Error), "panic") {
			cond, _ := json.Marshal(n.Status.Conditions)
			missing = append(missing, fmt.Sprintf("status.error is %q (conditions %s)", n.Status.Error, cond))
		}
	}
	found := false
	var seen []string
	for _, e := range events {
		if e.InvolvedObject.Name != in.node {
			continue
		}
		seen = append(seen, e.Reason+": "+e.Message)
		if strings.Contains(strings.ToLower(e.Message), "panic") {
			found = true
		}
	}
	if !found {
		missing = append(missing, fmt.Sprintf("no Event names a panic (events on the node: %q)", seen))
	}
	return strings.Join(missing, "; ")
}

func allEmpty(m map[string]string) bool {
	for _, v := range m {
		if v != "" {
			return false
		}
	}
	return true
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
