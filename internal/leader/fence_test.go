package leader_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tinymod/tinymod/internal/leader"
)

// TestFence: guarded writes leave only with a valid term in their context,
// whatever the group (Services and Ingresses that _client writes included) and
// under an API server path prefix; Leases, Events, reads and creates pass.
func TestFence(t *testing.T) {
	for _, prefix := range []string{"", "/k8s/clusters/c-1"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			var reached atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
			defer srv.Close()
			fence := &leader.Fence{Prefix: leader.PrefixOf(srv.URL + prefix)}
			if fence.Prefix != prefix {
				t.Fatalf("PrefixOf(%q) = %q, want %q", srv.URL+prefix, fence.Prefix, prefix)
			}
			c := &http.Client{Transport: fence.Wrap(http.DefaultTransport)}
			do := func(ctx context.Context, method, path string) error {
				req, _ := http.NewRequestWithContext(ctx, method, srv.URL+prefix+path, strings.NewReader("{}"))
				resp, err := c.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				return err
			}
			guarded := []string{
				"/apis/operator.tinysystems.io/v1alpha1/namespaces/ns/tinynodes/a/status",
				"/apis/operator.tinysystems.io/v1alpha1/namespaces/ns/tinysignals/s",
				"/api/v1/namespaces/ns/services/a-http",
				"/apis/networking.k8s.io/v1/namespaces/ns/ingresses/a-http",
			}
			var m leader.Manual
			old := m.Start()
			m.Stop()
			for name, ctx := range map[string]context.Context{
				"no term":    context.Background(),
				"ended term": leader.WithTerm(context.Background(), old),
				"nil term":   leader.WithTerm(context.Background(), nil),
			} {
				for _, path := range guarded {
					for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
						if err := do(ctx, method, path); !errors.Is(err, leader.ErrFenced) {
							t.Errorf("%s: %s %s: %v, want ErrFenced", name, method, path, err)
						}
					}
				}
			}
			if n := reached.Load(); n != 0 {
				t.Fatalf("%d fenced writes reached the server", n)
			}
			// Reads, creates, Leases and Events pass without a term.
			open := [][2]string{
				{http.MethodGet, guarded[0]},
				{http.MethodPost, "/apis/operator.tinysystems.io/v1alpha1/namespaces/ns/tinymodules"},
				{http.MethodPut, "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"},
				{http.MethodDelete, "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"},
				{http.MethodPatch, "/apis/events.k8s.io/v1/namespaces/ns/events/e"},
				{http.MethodPatch, "/api/v1/namespaces/ns/events/e"},
			}
			for _, r := range open {
				if err := do(context.Background(), r[0], r[1]); err != nil {
					t.Errorf("%s %s: %v", r[0], r[1], err)
				}
			}
			// A valid term's writes pass.
			term := m.Start()
			for _, path := range guarded {
				if err := do(leader.WithTerm(context.Background(), term), http.MethodPut, path); err != nil {
					t.Errorf("leader's PUT %s: %v", path, err)
				}
			}
			if n, want := reached.Load(), int32(len(open)+len(guarded)); n != want {
				t.Errorf("%d requests reached the server, want %d", n, want)
			}
		})
	}
}
