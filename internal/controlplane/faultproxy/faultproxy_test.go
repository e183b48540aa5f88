package faultproxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// upstream is a stand-in API server that tells who called it.
type upstream struct {
	srv     *httptest.Server
	cfg     *rest.Config // as user "replica-1", by client certificate
	reached atomic.Int32
	release chan struct{} // ends a watch
	auth    atomic.Value  // the last Authorization header seen
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{release: make(chan struct{})}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.reached.Add(1)
		u.auth.Store(r.Header.Get("Authorization"))
		user := "anonymous"
		if len(r.TLS.PeerCertificates) > 0 {
			user = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		if r.URL.Query().Get("watch") == "true" {
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "event 1 for "+user+"\n")
			w.(http.Flusher).Flush()
			<-u.release
			return
		}
		_, _ = io.WriteString(w, "hello "+user)
	}))
	u.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	u.srv.EnableHTTP2 = true
	u.srv.StartTLS()
	t.Cleanup(func() {
		select {
		case <-u.release:
		default:
			close(u.release)
		}
		u.srv.Close()
	})
	certPEM, keyPEM := clientCert(t, "replica-1")
	u.cfg = &rest.Config{Host: u.srv.URL, TLSClientConfig: rest.TLSClientConfig{
		CAData:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: u.srv.Certificate().Raw}),
		CertData: certPEM, KeyData: keyPEM,
	}}
	return u
}

func clientCert(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func start(t *testing.T, u *upstream, opts Options) (*Proxy, *http.Client) {
	t.Helper()
	p, cfg, err := New(u.cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, &http.Client{Transport: rt, Timeout: 10 * time.Second}
}

func TestForwardsAsTheUserAndStreamsWatches(t *testing.T) {
	u := newUpstream(t)
	p, c := start(t, u, Options{})
	req, _ := http.NewRequest(http.MethodGet, "https://"+p.Addr()+"/api/v1/namespaces/ns/pods/x", nil)
	req.Header.Set("Authorization", "Bearer someone-else")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello replica-1" {
		t.Errorf("upstream saw %q, want the proxy's user", body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("served over %s, want HTTP/2", resp.Proto)
	}
	if got := u.auth.Load(); got != "" {
		t.Errorf("the client's Authorization reached the API server: %q", got)
	}

	// A watch's first event arrives while the watch is still open.
	resp, err = c.Get("https://" + p.Addr() + "/apis/operator.tinysystems.io/v1alpha1/namespaces/ns/tinysignals?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "event 1 for replica-1\n" {
		t.Fatalf("watch: %q, %v", line, err)
	}
	close(u.release)
}

func TestFaults(t *testing.T) {
	cases := []struct {
		kind         Kind
		method, path string
		code         int  // 0: the request fails without an answer
		reaches      bool // the API server sees it
	}{
		{Unavailable, http.MethodGet, "/api/v1/namespaces/ns/pods", 503, false},
		{TooManyRequests, http.MethodPost, "/api/v1/namespaces/ns/pods", 429, false},
		{Conflict, http.MethodPut, "/apis/operator.tinysystems.io/v1alpha1/namespaces/ns/tinysignals/s/status", 409, false},
		{Conflict, http.MethodGet, "/api/v1/namespaces/ns/pods/x", 200, true}, // a read never conflicts: forwarded
		{Timeout, http.MethodDelete, "/apis/operator.tinysystems.io/v1alpha1/namespaces/ns/tinysignals/s", 0, false},
		{LostResponse, http.MethodDelete, "/apis/operator.tinysystems.io/v1alpha1/namespaces/ns/tinysignals/s", 0, true},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind)+" "+tc.method, func(t *testing.T) {
			u := newUpstream(t)
			p, c := start(t, u, Options{Rate: 1, Kinds: []Kind{tc.kind}, Hold: 50 * time.Millisecond, RetryAfter: 3})
			req, _ := http.NewRequest(tc.method, "https://"+p.Addr()+tc.path, strings.NewReader("{}"))
			resp, err := c.Do(req)
			if tc.code == 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("answered %d, want no answer", resp.StatusCode)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.code {
					t.Fatalf("answered %d, want %d: %s", resp.StatusCode, tc.code, body)
				}
				if tc.code >= 400 && !strings.Contains(string(body), `"kind":"Status"`) {
					t.Errorf("body is not a Status: %s", body)
				}
				if tc.code == 429 && resp.Header.Get("Retry-After") != "3" {
					t.Errorf("Retry-After %q, want 3", resp.Header.Get("Retry-After"))
				}
			}
			if reached := u.reached.Load() > 0; reached != tc.reaches {
				t.Errorf("reached the API server: %v, want %v", reached, tc.reaches)
			}
			faults := p.Tally().Faults()
			want := 1
			if tc.code == 200 {
				want = 0
			}
			if n := len(faults); n != want {
				t.Errorf("tally %v, want %d fault", faults, want)
			}
		})
	}
}

func TestSpareAndRate(t *testing.T) {
	u := newUpstream(t)
	tally := &Tally{}
	p, c := start(t, u, Options{Rate: 0.5, Kinds: []Kind{Unavailable}, Seed: 7, Tally: tally,
		Spare: func(r Request) bool { return r.Resource == "leases" }})
	for range 50 {
		resp, err := c.Get("https://" + p.Addr() + "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("a spared request failed: %d", resp.StatusCode)
		}
	}
	failed := 0
	for range 200 {
		resp, err := c.Get("https://" + p.Addr() + "/api/v1/namespaces/ns/pods")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 503 {
			failed++
		}
	}
	if failed < 60 || failed > 140 {
		t.Errorf("%d of 200 failed at rate 0.5", failed)
	}
	if got := tally.Faults()[Fault{Kind: Unavailable, Verb: "list", Target: "pods"}]; got != failed {
		t.Errorf("tally says %d, %d failed", got, failed)
	}
	if got := tally.Requests()["get"] + tally.Requests()["list"]; got != 250 {
		t.Errorf("tally counted %d requests, want 250", got)
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		method, url string
		want        Request
	}{
		{"GET", "/api/v1/namespaces/ns/pods", Request{Verb: "list", Namespace: "ns", Resource: "pods"}},
		{"GET", "/api/v1/namespaces/ns/pods?watch=true&resourceVersion=1", Request{Verb: "watch", Namespace: "ns", Resource: "pods"}},
		{"GET", "/api/v1/namespaces/ns", Request{Verb: "get", Resource: "namespaces", Name: "ns"}},
		{"PUT", "/api/v1/namespaces/ns/status", Request{Verb: "update", Resource: "namespaces", Name: "ns", Subresource: "status"}},
		{"PUT", "/apis/operator.tinysystems.io/v1alpha1/namespaces/ns/tinysignals/s/status",
			Request{Verb: "update", Group: "operator.tinysystems.io", Namespace: "ns", Resource: "tinysignals", Name: "s", Subresource: "status"}},
		{"DELETE", "/apis/operator.tinysystems.io/v1alpha1/namespaces/ns/tinysignals/s",
			Request{Verb: "delete", Group: "operator.tinysystems.io", Namespace: "ns", Resource: "tinysignals", Name: "s"}},
		{"DELETE", "/apis/operator.tinysystems.io/v1alpha1/namespaces/ns/tinysignals",
			Request{Verb: "deletecollection", Group: "operator.tinysystems.io", Namespace: "ns", Resource: "tinysignals"}},
		{"PATCH", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", Request{Verb: "patch", Group: "coordination.k8s.io", Namespace: "ns", Resource: "leases", Name: "l"}},
		{"POST", "/apis/events.k8s.io/v1/namespaces/ns/events", Request{Verb: "create", Group: "events.k8s.io", Namespace: "ns", Resource: "events"}},
		{"GET", "/apis/coordination.k8s.io/v1/watch/namespaces/ns/leases", Request{Verb: "watch", Group: "coordination.k8s.io", Namespace: "ns", Resource: "leases"}},
		{"GET", "/apis", Request{Verb: "get", Resource: "/apis"}},
		{"GET", "/version", Request{Verb: "get", Resource: "/version"}},
	}
	for _, tc := range cases {
		req := httptest.NewRequest(tc.method, tc.url, nil)
		if got := Classify(req); got != tc.want {
			t.Errorf("%s %s: %+v, want %+v", tc.method, tc.url, got, tc.want)
		}
	}
}
