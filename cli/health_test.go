package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHealthReaderFollowsNoRedirects: what answers on a replica's metrics
// address cannot send the reader elsewhere (tinymod status reads through the
// same code as the page, which carries the user's credentials to the pod
// proxy).
func TestHealthReaderFollowsNoRedirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		elsewhere.Add(1)
		_, _ = w.Write([]byte(`{"module":"m","identity":"x","nodes":{}}`))
	}))
	defer other.Close()
	replica := httptest.NewServer(http.RedirectHandler(other.URL+"/tinymod/nodes", http.StatusFound))
	defer replica.Close()
	_, err := (&HealthReader{}).Read(context.Background(), "r-0", strings.TrimPrefix(replica.URL, "http://"))
	if err == nil || elsewhere.Load() != 0 {
		t.Errorf("a redirect was followed: %v, %d requests elsewhere", err, elsewhere.Load())
	}
}
