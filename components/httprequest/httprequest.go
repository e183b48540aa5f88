// Package httprequest makes an HTTP request for each message and sends the
// response on out. Settings give the defaults (method, URL, headers, body,
// timeout); each message may override them. The request is bound to the
// message's context and carries its W3C trace context. Transport errors, 5xx
// and 429 are transient errors (an edge's retry policy retries them); other
// 4xx are permanent. Every replica makes requests.
package httprequest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/module"
)

// ComponentName is how TinyNodes name this component.
const ComponentName = "http-request"

// Ports.
const (
	RequestPort = "request"
	OutPort     = "out"
)

// Defaults.
const (
	DefaultMethod       = http.MethodGet
	DefaultTimeout      = "30s"
	DefaultMaxBodyBytes = 1 << 20
)

// excerpt bounds how much of an error response's body an error quotes.
const excerpt = 512

// Settings of an http-request node: the defaults of every request.
type Settings struct {
	Method       string            `json:"method,omitempty" jsonschema:"title=Method,description=HTTP method,default=GET"`
	URL          string            `json:"url,omitempty" jsonschema:"title=URL,description=http or https URL; a request may give its own"`
	Headers      map[string]string `json:"headers,omitempty" jsonschema:"title=Headers,description=Request headers; a request's own headers win by name"`
	Body         any               `json:"body,omitempty" jsonschema:"title=Body,description=Request body: a string is sent as it is; any other JSON value is sent as JSON"`
	Timeout      string            `json:"timeout,omitempty" jsonschema:"title=Timeout,description=How long a request may take: a Go duration such as 5s,default=30s"`
	MaxBodyBytes int64             `json:"maxBodyBytes,omitempty" jsonschema:"title=Max body bytes,description=A larger response body fails the request,minimum=0,default=1048576"`
}

// Request is one message on the request port: what it gives overrides the
// settings.
type Request struct {
	Method  string            `json:"method,omitempty" jsonschema:"title=Method,description=HTTP method (default: the settings')"`
	URL     string            `json:"url,omitempty" jsonschema:"title=URL,description=http or https URL (default: the settings')"`
	Headers map[string]string `json:"headers,omitempty" jsonschema:"title=Headers,description=Headers added to the settings' (these win by name)"`
	Body    any               `json:"body,omitempty" jsonschema:"title=Body,description=A string is sent as it is; any other JSON value as JSON (default: the settings')"`
	Timeout string            `json:"timeout,omitempty" jsonschema:"title=Timeout,description=A Go duration (default: the settings')"`
}

// Response is what a request gives, on out and as the result.
type Response struct {
	Status  int               `json:"status" jsonschema:"title=Status,description=HTTP status code"`
	Headers map[string]string `json:"headers,omitempty" jsonschema:"title=Headers,description=Response headers; several values of one name joined with a comma"`
	Body    string            `json:"body" jsonschema:"title=Body,description=The body as text"`
	JSON    any               `json:"json,omitempty" jsonschema:"title=JSON,description=The body decoded when the content type is JSON and it decodes"`
}

// StatusError is a response whose status fails the request (4xx, 5xx).
type StatusError struct {
	Method, URL string
	Status      int
	// Body is the start of the response's body.
	Body string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Component is the http-request.
type Component struct {
	mu       sync.RWMutex
	settings Settings
	timeout  time.Duration
	client   *http.Client
}

// GetInfo describes the component.
func (c *Component) GetInfo() module.ComponentInfo {
	return module.ComponentInfo{Name: ComponentName, Description: "Makes HTTP requests",
		Info: "Makes a request for each message on request (its fields override the settings) and sends the response {status, headers, body, json} on out; the response is also the result. Transport errors, 5xx and 429 are transient (an edge's retry policy retries them), other 4xx permanent. The request carries the message's trace context and ends with its context. Every replica makes requests.",
		Tags: []string{"SDK", "HTTP"}}
}

// Instance returns a new http-request with its own connections.
func (c *Component) Instance() module.Component {
	return &Component{
		settings: Settings{Method: DefaultMethod, Timeout: DefaultTimeout, MaxBodyBytes: DefaultMaxBodyBytes},
		timeout:  30 * time.Second,
		client:   &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
	}
}

// Ports: settings, request and out.
func (c *Component) Ports() []module.Port {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return []module.Port{
		{Name: v1alpha1.SettingsPort, Label: "Settings", Configuration: c.settings},
		{Name: RequestPort, Label: "Request", Position: module.Left, Configuration: Request{}, ResponseConfiguration: Response{}},
		{Name: OutPort, Label: "Response", Source: true, Position: module.Right, Configuration: Response{}},
	}
}

// Handle requests on every replica.
func (c *Component) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	switch port {
	case v1alpha1.SettingsPort:
		s, _ := msg.(Settings)
		return c.configure(s)
	case RequestPort:
		req, _ := msg.(Request)
		resp, err := c.do(ctx, req)
		if err != nil {
			return err
		}
		if res, failed := output(ctx, OutPort, resp).(error); failed && res != nil {
			return res
		}
		return resp
	}
	return nil
}

func (c *Component) configure(s Settings) error {
	s.Method = strings.ToUpper(s.Method)
	if s.Method == "" {
		s.Method = DefaultMethod
	}
	if s.Timeout == "" {
		s.Timeout = DefaultTimeout
	}
	if s.MaxBodyBytes == 0 {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	var errs []error
	if err := checkMethod(s.Method); err != nil {
		errs = append(errs, err)
	}
	if s.URL != "" {
		if _, err := checkURL(s.URL); err != nil {
			errs = append(errs, err)
		}
	}
	if err := checkHeaders(s.Headers); err != nil {
		errs = append(errs, err)
	}
	timeout, err := parseTimeout(s.Timeout)
	if err != nil {
		errs = append(errs, err)
	}
	if s.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("maxBodyBytes %d: want 0 (the default, %d) or more", s.MaxBodyBytes, DefaultMaxBodyBytes))
	}
	if _, err := encodeBody(s.Body); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return module.Permanent(errors.Join(errs...))
	}
	c.mu.Lock()
	c.settings, c.timeout = s, timeout
	c.mu.Unlock()
	return nil
}

// do makes the request r asks for, over the settings' defaults.
func (c *Component) do(ctx context.Context, r Request) (Response, error) {
	c.mu.RLock()
	s, timeout, client := c.settings, c.timeout, c.client
	c.mu.RUnlock()

	method := s.Method
	if r.Method != "" {
		method = strings.ToUpper(r.Method)
		if err := checkMethod(method); err != nil {
			return Response{}, module.Permanent(err)
		}
	}
	rawURL := s.URL
	if r.URL != "" {
		rawURL = r.URL
	}
	if rawURL == "" {
		return Response{}, module.Permanent(errors.New("no url: set one in the settings or the request"))
	}
	u, err := checkURL(rawURL)
	if err != nil {
		return Response{}, module.Permanent(err)
	}
	if err := checkHeaders(r.Headers); err != nil {
		return Response{}, module.Permanent(err)
	}
	if r.Timeout != "" {
		if timeout, err = parseTimeout(r.Timeout); err != nil {
			return Response{}, module.Permanent(err)
		}
	}
	body := s.Body
	if r.Body != nil {
		body = r.Body
	}
	payload, err := encodeBody(body)
	if err != nil {
		return Response{}, module.Permanent(err)
	}

	msgCtx := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return Response{}, module.Permanent(fmt.Errorf("%s %s: %w", method, redact(u), err))
	}
	if payload != nil {
		req.Body = io.NopCloser(strings.NewReader(payload.text))
		req.ContentLength = int64(len(payload.text))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(payload.text)), nil }
		if payload.json {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	for _, h := range []map[string]string{s.Headers, r.Headers} {
		for k, v := range h {
			if strings.EqualFold(k, "Host") {
				req.Host = v // Go sends req.Host, never a Host header
				continue
			}
			req.Header.Set(k, v)
		}
	}
	// The receiver's spans, if it traces, become children of this message's.
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))

	where := method + " " + redact(u)
	resp, err := client.Do(req)
	if err != nil {
		return Response{}, transportError(msgCtx, ctx, where, timeout, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode >= 400 {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, excerpt))
		serr := &StatusError{Method: method, URL: redact(u), Status: resp.StatusCode, Body: clip(head)}
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return Response{}, serr // the server may do better next time
		}
		return Response{}, module.Permanent(serr)
	}
	limit := s.MaxBodyBytes
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return Response{}, transportError(msgCtx, ctx, where+": reading the response body", timeout, err)
	}
	if int64(len(data)) > limit {
		return Response{}, module.Permanent(fmt.Errorf("%s: the response body is over maxBodyBytes (%d bytes)", where, limit))
	}
	out := Response{Status: resp.StatusCode, Body: string(data), Headers: make(map[string]string, len(resp.Header))}
	for k, vs := range resp.Header {
		out.Headers[k] = strings.Join(vs, ", ")
	}
	if isJSON(resp.Header.Get("Content-Type")) && len(data) > 0 {
		var v any
		if json.Unmarshal(data, &v) == nil {
			out.JSON = v
		}
	}
	return out, nil
}

// transportError classifies an error of the exchange. The message's own
// context ending (its sender gave up) is returned as the context's error,
// which is never retried; the request's own timeout and anything the network
// did are transient.
func transportError(msgCtx, reqCtx context.Context, where string, timeout time.Duration, err error) error {
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err // where says the method and URL already
	}
	switch {
	case msgCtx.Err() != nil:
		return fmt.Errorf("%s: %w", where, msgCtx.Err())
	case reqCtx.Err() != nil:
		return fmt.Errorf("%s: no response within %s: %w", where, timeout, reqCtx.Err())
	}
	return fmt.Errorf("%s: %w", where, err)
}

// Destroy closes the instance's idle connections.
func (c *Component) Destroy() { c.client.CloseIdleConnections() }

type body struct {
	text string
	json bool // encoded here as JSON
}

// encodeBody is the payload of a body value: a string as it is, anything
// else (but null) as JSON.
func encodeBody(v any) (*body, error) {
	switch b := v.(type) {
	case nil:
		return nil, nil
	case string:
		return &body{text: b}, nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	return &body{text: string(raw), json: true}, nil
}

func parseTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("timeout %q: want a positive Go duration such as 500ms or 10s", s)
	}
	return d, nil
}

func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("url %q: want an absolute http or https URL", clip([]byte(raw)))
	}
	return u, nil
}

// checkMethod accepts what HTTP calls a token.
func checkMethod(m string) error {
	if m == "" || strings.IndexFunc(m, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
		return fmt.Errorf("method %q: not an HTTP method", clip([]byte(m)))
	}
	return nil
}

func checkHeaders(h map[string]string) error {
	for k, v := range h {
		if k == "" || strings.IndexFunc(k, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
			return fmt.Errorf("header name %q: not an HTTP header name", clip([]byte(k)))
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return fmt.Errorf("header %s: the value holds a line break or NUL", k)
		}
	}
	return nil
}

// isTokenChar: RFC 9110's tchar.
func isTokenChar(r rune) bool {
	return r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r))
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// redact is u without its password, for errors and logs.
func redact(u *url.URL) string { return u.Redacted() }

// clip is the start of b as text, for errors.
func clip(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if len(s) > excerpt {
		s = s[:excerpt] + "..."
	}
	return strings.TrimSpace(s)
}
