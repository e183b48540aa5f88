package ui

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/mapping"
	"github.com/tinymod/tinymod/internal/scheduler"
)

// NoFlow is the flow name the page uses for nodes without one.
const NoFlow = "_none"

func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/signals", bounded(s.createSignal))
	mux.HandleFunc("POST /api/nodes", bounded(s.createNode))
	mux.HandleFunc("DELETE /api/nodes/{name}", bounded(s.deleteNode))
	mux.HandleFunc("PUT /api/nodes/{name}/settings", bounded(s.putSettings))
	mux.HandleFunc("POST /api/nodes/{name}/edges", bounded(s.addEdge))
	mux.HandleFunc("DELETE /api/nodes/{name}/edges/{id}", bounded(s.deleteEdge))
	mux.HandleFunc("POST /api/mapping/check", s.checkMapping)
}

// changeTimeout bounds a change: an API server that does not answer makes
// it fail with a timeout rather than hang.
var changeTimeout = 30 * time.Second

// bounded gives a change changeTimeout.
func bounded(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), changeTimeout)
		defer cancel()
		h(w, r.WithContext(ctx))
	}
}

func (s *Server) state(w http.ResponseWriter, r *http.Request) {
	leadership, rates, debug := s.hub.latest()
	body, err := s.snapshot(r.Context(), leadership, rates, debug, func(snap *Snapshot) ([]byte, error) { return json.Marshal(snap) })
	if err != nil {
		writeAPIError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// apiError is what the page shows of a refused request.
type apiError struct {
	Status  int    `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, apiError{Status: code, Reason: reason, Message: msg})
}

// writeAPIError passes the API server's refusal on as it was: a 403 stays a
// 403, with its message.
func writeAPIError(w http.ResponseWriter, err error) {
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout() {
		writeError(w, http.StatusGatewayTimeout, "Timeout", fmt.Sprintf("the API server did not answer within %v: %v", changeTimeout, err))
		return
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		st := status.Status()
		code := int(st.Code)
		if code == 0 {
			code = http.StatusInternalServerError
		}
		writeError(w, code, string(st.Reason), st.Message)
		return
	}
	var bad badRequest
	if errors.As(err, &bad) {
		writeError(w, http.StatusBadRequest, "BadRequest", bad.Error())
		return
	}
	var tooLarge tooLargeError
	if errors.As(err, &tooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", tooLarge.Error())
		return
	}
	var unavailable unavailableError
	if errors.As(err, &unavailable) {
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", unavailable.Error())
		return
	}
	writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
}

// unavailableError is a failure of the API server to answer, not of the
// request; a refusal it wraps is passed on as such.
type unavailableError struct{ error }

func (e unavailableError) Unwrap() error { return e.error }

type badRequest struct{ error }

// maxBody bounds a request's body.
const maxBody = 1 << 20

// decodeBody reads the one JSON value of the body into v: unknown fields,
// trailing data and a body over maxBody are refused.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&json.RawMessage{}) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return tooLargeError{fmt.Errorf("request body: over %d bytes", maxBody)}
	}
	if err != nil {
		return badRequest{fmt.Errorf("request body: %w", err)}
	}
	return nil
}

type tooLargeError struct{ error }

// nodeName checks that name can be a TinyNode's: a DNS subdomain, dots
// allowed.
func nodeName(name string) error {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return badRequest{fmt.Errorf("%q is not a node name: %s", name, strings.Join(msgs, "; "))}
	}
	return nil
}

// portName checks that name can be a port's: never a dot.
func portName(name string) error {
	if name == "" || len(name) > 63 || strings.Contains(name, ".") {
		return badRequest{fmt.Errorf("%q is not a port name (1 to 63 characters, no dot)", name)}
	}
	return nil
}

// target splits "<node>.<port>" at its last dot, as the runtime does: node
// names may have dots, port names never do.
func target(to string) (node, port string, err error) {
	node, port, err = scheduler.SplitTarget(to)
	if err != nil {
		return "", "", badRequest{err}
	}
	if err := nodeName(node); err != nil {
		return "", "", err
	}
	if err := portName(port); err != nil {
		return "", "", err
	}
	return node, port, nil
}

// targetNode is the node of an edge's target, "" if it names none.
func targetNode(to string) string {
	node, _, err := scheduler.SplitTarget(to)
	if err != nil {
		return ""
	}
	return node
}

func rawJSON(v json.RawMessage) *apiextensionsv1.JSON {
	if len(v) == 0 || string(v) == "null" {
		return nil
	}
	return &apiextensionsv1.JSON{Raw: v}
}

func (s *Server) createSignal(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Node string          `json:"node"`
		Port string          `json:"port"`
		Data json.RawMessage `json:"data"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		writeAPIError(w, err)
		return
	}
	if err := errors.Join(nodeName(req.Node), portName(req.Port)); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", "a signal needs a node and a port: "+err.Error())
		return
	}
	sig := &v1alpha1.TinySignal{
		ObjectMeta: metav1.ObjectMeta{GenerateName: req.Node + "-", Namespace: s.opts.Namespace},
		Spec:       v1alpha1.TinySignalSpec{Node: req.Node, Port: req.Port, Data: rawJSON(req.Data)},
	}
	if err := s.c.Create(r.Context(), sig); err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"name": sig.Name})
}

func (s *Server) createNode(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Module    string `json:"module"`
		Component string `json:"component"`
		Flow      string `json:"flow"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		writeAPIError(w, err)
		return
	}
	if req.Module == "" || req.Component == "" {
		writeError(w, http.StatusBadRequest, "BadRequest", "a node needs a module and a component")
		return
	}
	prefix := strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(req.Component), "-"), "-")
	if prefix == "" {
		prefix = "node"
	}
	n := &v1alpha1.TinyNode{
		ObjectMeta: metav1.ObjectMeta{Name: prefix + "-" + randomSuffix(), Namespace: s.opts.Namespace},
		Spec:       v1alpha1.TinyNodeSpec{Module: req.Module, Component: req.Component},
	}
	if req.Flow != "" && req.Flow != NoFlow {
		n.Labels = map[string]string{v1alpha1.FlowNameLabel: req.Flow}
	}
	if err := s.c.Create(r.Context(), n); err != nil {
		writeAPIError(w, err)
		return
	}
	n.ManagedFields = nil
	writeJSON(w, http.StatusCreated, n)
}

var unsafeName = regexp.MustCompile(`[^a-z0-9-]+`)

func randomSuffix() string {
	const letters = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}

// update changes a node with retries on conflict.
func (s *Server) update(ctx context.Context, name string, change func(*v1alpha1.TinyNode) error) (*v1alpha1.TinyNode, error) {
	n := &v1alpha1.TinyNode{}
	var last error
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		last = func() error {
			if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.opts.Namespace, Name: name}, n); err != nil {
				return err
			}
			if err := change(n); err != nil {
				return err
			}
			return s.c.Update(ctx, n)
		}()
		return last
	})
	if err == nil {
		// RetryOnConflict returns nil for an error that wraps a context's
		// end (a timeout, the page gone), as if the change were made.
		err = last
	}
	n.ManagedFields = nil
	return n, err
}

func (s *Server) putSettings(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Configuration json.RawMessage `json:"configuration"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		writeAPIError(w, err)
		return
	}
	name := r.PathValue("name")
	if err := nodeName(name); err != nil {
		writeAPIError(w, err)
		return
	}
	n, err := s.update(r.Context(), name, func(n *v1alpha1.TinyNode) error {
		setPort(n, v1alpha1.TinyNodePortConfig{Port: v1alpha1.SettingsPort, Configuration: rawJSON(req.Configuration)})
		return nil
	})
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

// setPort puts c in place of the node's entry for the same port and From.
func setPort(n *v1alpha1.TinyNode, c v1alpha1.TinyNodePortConfig) {
	for i, p := range n.Spec.Ports {
		if p.Port == c.Port && p.From == c.From {
			n.Spec.Ports[i] = c
			return
		}
	}
	n.Spec.Ports = append(n.Spec.Ports, c)
}

func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := nodeName(name); err != nil {
		writeAPIError(w, err)
		return
	}
	ctx := r.Context()
	n := &v1alpha1.TinyNode{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.opts.Namespace, Name: name}, n); err != nil {
		writeAPIError(w, err)
		return
	}
	if err := s.c.Delete(ctx, n, client.Preconditions{UID: &n.UID}); err != nil {
		writeAPIError(w, err)
		return
	}
	// The mappings of its edges go from their targets.
	targets := map[string]bool{}
	for _, e := range n.Spec.Edges {
		if to := targetNode(e.To); to != "" && to != name {
			targets[to] = true
		}
	}
	for to := range targets {
		if _, err := s.update(ctx, to, func(t *v1alpha1.TinyNode) error {
			kept := t.Spec.Ports[:0]
			for _, p := range t.Spec.Ports {
				if p.From == "" || targetNode(p.From) != name {
					kept = append(kept, p)
				}
			}
			t.Spec.Ports = kept
			return nil
		}); err != nil && !apierrors.IsNotFound(err) {
			writeAPIError(w, err)
			return
		}
	}
	// Edges into it go with it, as wires go with a node on a canvas.
	var all v1alpha1.TinyNodeList
	if err := s.c.List(ctx, &all, client.InNamespace(s.opts.Namespace)); err != nil {
		writeAPIError(w, err)
		return
	}
	for _, other := range all.Items {
		if !pointsAt(other, name) {
			continue
		}
		if _, err := s.update(ctx, other.Name, func(o *v1alpha1.TinyNode) error {
			kept := o.Spec.Edges[:0]
			for _, e := range o.Spec.Edges {
				if targetNode(e.To) != name {
					kept = append(kept, e)
				}
			}
			o.Spec.Edges = kept
			return nil
		}); err != nil && !apierrors.IsNotFound(err) {
			writeAPIError(w, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func pointsAt(n v1alpha1.TinyNode, name string) bool {
	for _, e := range n.Spec.Edges {
		if targetNode(e.To) == name {
			return true
		}
	}
	return false
}

func (s *Server) addEdge(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Port    string          `json:"port"`
		To      string          `json:"to"`
		Mapping json.RawMessage `json:"mapping"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		writeAPIError(w, err)
		return
	}
	name := r.PathValue("name")
	if err := nodeName(name); err != nil {
		writeAPIError(w, err)
		return
	}
	toNode, toPort, err := target(req.To)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	if err := portName(req.Port); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", "an edge needs the port it leaves from: "+err.Error())
		return
	}
	tpl := rawJSON(req.Mapping)
	if tpl != nil {
		if _, err := mapping.Compile(tpl.Raw); err != nil {
			writeError(w, http.StatusBadRequest, "Invalid", "mapping: "+err.Error())
			return
		}
	}
	id := req.Port + "-" + toNode + "-" + randomSuffix()
	from := name + "." + req.Port
	// The mapping first: an edge that starts delivering finds it in place.
	var replaced *v1alpha1.TinyNodePortConfig
	if tpl != nil {
		if _, err := s.update(r.Context(), toNode, func(n *v1alpha1.TinyNode) error {
			replaced = nil
			for _, p := range n.Spec.Ports {
				if p.Port == toPort && p.From == from {
					replaced = p.DeepCopy()
				}
			}
			setPort(n, v1alpha1.TinyNodePortConfig{Port: toPort, From: from, Configuration: tpl})
			return nil
		}); err != nil {
			writeAPIError(w, err)
			return
		}
	}
	if _, err := s.update(r.Context(), name, func(n *v1alpha1.TinyNode) error {
		n.Spec.Edges = append(n.Spec.Edges, v1alpha1.TinyNodeEdge{ID: id, Port: req.Port, To: req.To})
		return nil
	}); err != nil {
		if tpl != nil {
			s.undoMapping(r.Context(), toNode, toPort, from, tpl, replaced)
		}
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"id": id})
}

// undoMapping takes back a mapping written for an edge that then could
// not be written: the one it replaced comes back, or else it goes. It
// leaves alone a mapping changed since.
func (s *Server) undoMapping(ctx context.Context, toNode, toPort, from string, ours *apiextensionsv1.JSON, replaced *v1alpha1.TinyNodePortConfig) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := s.update(ctx, toNode, func(n *v1alpha1.TinyNode) error {
		kept := n.Spec.Ports[:0]
		for _, p := range n.Spec.Ports {
			if p.Port == toPort && p.From == from && p.Configuration != nil && bytes.Equal(p.Configuration.Raw, ours.Raw) {
				if replaced != nil {
					kept = append(kept, *replaced)
				}
				continue
			}
			kept = append(kept, p)
		}
		n.Spec.Ports = kept
		return nil
	})
	if err != nil && !apierrors.IsNotFound(err) {
		s.opts.Log.Error(err, "take back the mapping of an edge that was not written", "node", toNode, "port", toPort, "from", from)
	}
}

func (s *Server) deleteEdge(w http.ResponseWriter, r *http.Request) {
	name, id := r.PathValue("name"), r.PathValue("id")
	if err := nodeName(name); err != nil {
		writeAPIError(w, err)
		return
	}
	var gone *v1alpha1.TinyNodeEdge
	var rest []v1alpha1.TinyNodeEdge
	_, err := s.update(r.Context(), name, func(n *v1alpha1.TinyNode) error {
		gone, rest = nil, nil
		for _, e := range n.Spec.Edges {
			if e.ID == id && gone == nil {
				gone = &e
				continue
			}
			rest = append(rest, e)
		}
		if gone == nil {
			return apierrors.NewNotFound(v1alpha1.GroupVersion.WithResource("tinynodes").GroupResource(), name+" edge "+id)
		}
		n.Spec.Edges = rest
		return nil
	})
	if err != nil {
		writeAPIError(w, err)
		return
	}
	// Its mapping goes too, unless another edge from the same port still
	// arrives there.
	for _, e := range rest {
		if e.Port == gone.Port && e.To == gone.To {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if toNode, toPort, err := target(gone.To); err == nil {
		_, err := s.update(r.Context(), toNode, func(n *v1alpha1.TinyNode) error {
			kept := n.Spec.Ports[:0]
			for _, p := range n.Spec.Ports {
				if !(p.Port == toPort && p.From == name+"."+gone.Port) {
					kept = append(kept, p)
				}
			}
			n.Spec.Ports = kept
			return nil
		})
		if err != nil && !apierrors.IsNotFound(err) {
			writeAPIError(w, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) checkMapping(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Mapping json.RawMessage `json:"mapping"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		writeAPIError(w, err)
		return
	}
	if len(req.Mapping) == 0 || string(req.Mapping) == "null" {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
		return
	}
	if _, err := mapping.Compile(req.Mapping); err != nil {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}
