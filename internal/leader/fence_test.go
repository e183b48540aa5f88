package leader_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tinymod/tinymod/internal/leader"
)

// switchable is a Status the test flips.
type switchable struct{ on atomic.Bool }

func (s *switchable) IsLeader() bool { return s.on.Load() }

func TestFence(t *testing.T) {
	var reached atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	defer srv.Close()
	fence := &leader.Fence{Groups: []string{"operator.tinysystems.io"}}
	c := &http.Client{Transport: fence.Wrap(http.DefaultTransport)}
	do := func(method, path string) error {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("{}"))
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	const node = "/apis/operator.tinysystems.io/v1alpha1/namespaces/ns/tinynodes/a/status"

	// Before any leadership is set, and while not leading, guarded writes stay home.
	status := &switchable{}
	for i, s := range []leader.Status{nil, status} {
		if s != nil {
			fence.Set(s)
		}
		for _, m := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if err := do(m, node); !errors.Is(err, leader.ErrFenced) {
				t.Errorf("case %d: %s while not leading: %v, want ErrFenced", i, m, err)
			}
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("%d fenced writes reached the server", n)
	}
	// Reads, creates and other groups' writes pass.
	for _, r := range [][2]string{{http.MethodGet, node}, {http.MethodPost, "/apis/operator.tinysystems.io/v1alpha1/namespaces/ns/tinymodules"},
		{http.MethodPut, "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"}} {
		if err := do(r[0], r[1]); err != nil {
			t.Errorf("%s %s: %v", r[0], r[1], err)
		}
	}
	// A leader's writes pass.
	status.on.Store(true)
	if err := do(http.MethodPut, node); err != nil {
		t.Errorf("leader's PUT: %v", err)
	}
	if n := reached.Load(); n != 4 {
		t.Errorf("%d requests reached the server, want 4", n)
	}
}
