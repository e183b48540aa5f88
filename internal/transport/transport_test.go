package transport_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/internal/replica"
	"github.com/tinymod/tinymod/internal/scheduler"
	"github.com/tinymod/tinymod/internal/transport"
	"github.com/tinymod/tinymod/internal/transport/transportpb"
	"github.com/tinymod/tinymod/module"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

const token = "s3cret"

type Ask struct {
	Who string `json:"who"`
	N   int    `json:"n"`
}

// caller, on _control, sends N asks on out and records the answers in metadata.
type caller struct{ id string }

func (c *caller) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "caller"} }
func (c *caller) Instance() module.Component    { return &caller{id: c.id} }
func (c *caller) Ports() []module.Port {
	return []module.Port{{Name: v1alpha1.ControlPort, Configuration: Ask{}}, {Name: "out", Source: true, Configuration: Ask{}}}
}
func (c *caller) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	if port != v1alpha1.ControlPort {
		return nil
	}
	ask := msg.(Ask)
	var answers []string
	for range max(ask.N, 1) {
		res := output(ctx, "out", Ask{Who: ask.Who})
		if err, ok := res.(error); ok {
			answers = append(answers, fmt.Sprintf("error permanent=%v: %v", module.IsPermanent(err), err))
			continue
		}
		answers = append(answers, fmt.Sprint(res))
	}
	data, _ := json.Marshal(answers)
	return output(ctx, v1alpha1.ReconcilePort, func(n *v1alpha1.TinyNode) { n.Status.Metadata["answers"] = string(data) })
}

// echo answers with its replica, after asking its out edge (if any).
type echo struct{ id string }

func (e *echo) GetInfo() module.ComponentInfo { return module.ComponentInfo{Name: "echo"} }
func (e *echo) Instance() module.Component    { return &echo{id: e.id} }
func (e *echo) Ports() []module.Port {
	return []module.Port{{Name: "in", Configuration: Ask{}}, {Name: "out", Source: true, Configuration: Ask{}}}
}
func (e *echo) Handle(ctx context.Context, output module.Handler, port string, msg any) any {
	if port != "in" {
		return nil
	}
	switch msg.(Ask).Who {
	case "slow":
		// Waits for its context: the sender's deadline must reach it.
		<-ctx.Done()
		slowEnded <- ctx.Err()
		return ctx.Err()
	case "fail":
		return fmt.Errorf("%s: transient trouble", e.id)
	case "perm":
		return module.Permanent(fmt.Errorf("%s: never", e.id))
	}
	next := output(ctx, "out", msg)
	if err, ok := next.(error); ok {
		return err
	}
	if next == nil {
		return e.id
	}
	return e.id + ">" + fmt.Sprint(next)
}

var slowEnded = make(chan error, 1)

type env struct {
	t       *testing.T
	e       *controlplanetest.Env
	ns      string
	ctx     context.Context
	tracing trace.TracerProvider // for the replicas, if set
}

func (v *env) start(moduleName, id string) context.CancelFunc {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		v.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- replica.Run(ctx, replica.Options{
			Module:     module.Info{Name: moduleName},
			Components: []module.Component{&caller{id: id}, &echo{id: id}},
			Config:     v.e.Config, Namespace: v.ns, Identity: id,
			Election:     leader.Config{LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 500 * time.Millisecond},
			GRPCListener: ln, GRPCAddr: ln.Addr().String(), GRPCToken: token,
			Tracing: v.tracing,
		})
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	v.t.Cleanup(stop)
	return stop
}

func (v *env) node(name, moduleName, component string, edges ...v1alpha1.TinyNodeEdge) {
	n := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v.ns},
		Spec: v1alpha1.TinyNodeSpec{Module: moduleName, Component: component, Edges: edges}}
	if err := v.e.Client.Create(v.ctx, n); err != nil {
		v.t.Fatal(err)
	}
}

// ask signals the caller and returns the answers it recorded.
func (v *env) ask(node string, a Ask) []string {
	v.t.Helper()
	before := v.answers(node)
	raw, _ := json.Marshal(a)
	s := &v1alpha1.TinySignal{ObjectMeta: metav1.ObjectMeta{GenerateName: "ask-", Namespace: v.ns},
		Spec: v1alpha1.TinySignalSpec{Node: node, Port: v1alpha1.ControlPort, Data: &apiextensionsv1.JSON{Raw: raw}}}
	if err := v.e.Client.Create(v.ctx, s); err != nil {
		v.t.Fatal(err)
	}
	var got []string
	// Generous: beside the rest of the suite on two cores, the first answers
	// (replicas starting, leases, the first status writes) have taken 30 s.
	controlplanetest.Eventually(v.t, 90*time.Second, func() error {
		raw := v.answers(node)
		if raw == "" || raw == before {
			return fmt.Errorf("no new answers on %s", node)
		}
		got = nil
		return json.Unmarshal([]byte(raw), &got)
	})
	return got
}

func (v *env) answers(node string) string {
	n := &v1alpha1.TinyNode{}
	if err := v.e.Client.Get(v.ctx, client.ObjectKey{Namespace: v.ns, Name: node}, n); err != nil {
		return ""
	}
	return n.Status.Metadata["answers"]
}

type fixed string

func (f fixed) Replicas(context.Context, string) []string     { return []string{string(f)} }
func (f fixed) Leader(context.Context, string) (string, bool) { return string(f), true }

func edge(id, port, to string) v1alpha1.TinyNodeEdge {
	return v1alpha1.TinyNodeEdge{ID: id, Port: port, To: to}
}

// TestAcrossModules: alpha's caller asks beta's echo, which asks alpha's echo:
// a flow crossing both ways, spread over both replicas of each module, with
// results and both error classes coming back, a cycle stopped by the depth
// limit, and traffic going on when one target replica stops.
func TestAcrossModules(t *testing.T) {
	e := controlplanetest.Start(t)
	v := &env{t: t, e: e, ns: e.Namespace(t), ctx: controlplanetest.Context(t, 6*time.Minute)}
	v.start("alpha", "alpha-0")
	v.start("alpha", "alpha-1")
	v.start("beta", "beta-0")
	stopBeta1 := v.start("beta", "beta-1")

	v.node("back", "alpha", "echo")
	v.node("far", "beta", "echo", edge("far-back", "out", "back.in"))
	v.node("src", "alpha", "caller", edge("src-far", "out", "far.in"))
	v.node("perm", "beta", "echo")
	v.node("src-perm", "alpha", "caller", edge("p", "out", "perm.in"))
	v.node("loop-a", "alpha", "echo", edge("la", "out", "loop-b.in"))
	v.node("loop-b", "beta", "echo", edge("lb", "out", "loop-a.in"))
	v.node("src-loop", "alpha", "caller", edge("l", "out", "loop-a.in"))

	// Wait until both beta replicas are reachable, then ask many times.
	var answers []string
	controlplanetest.Eventually(t, 60*time.Second, func() error {
		answers = v.ask("src", Ask{Who: "ann", N: 20})
		seen := map[string]bool{}
		for _, a := range answers {
			if strings.HasPrefix(a, "error") {
				return fmt.Errorf("answer %s", a)
			}
			seen[strings.Split(a, ">")[0]] = true
		}
		if !seen["beta-0"] || !seen["beta-1"] {
			return fmt.Errorf("calls landed on %v only", seen)
		}
		return nil
	})
	for _, a := range answers {
		if parts := strings.Split(a, ">"); len(parts) != 2 || !strings.HasPrefix(parts[1], "alpha-") {
			t.Errorf("answer %q did not come back through alpha", a)
		}
	}

	// Both error classes survive the wire.
	if got := v.ask("src", Ask{Who: "fail"}); len(got) != 1 || !strings.Contains(got[0], "permanent=false") || !strings.Contains(got[0], "transient trouble") {
		t.Errorf("transient error: %v", got)
	}
	if got := v.ask("src-perm", Ask{Who: "perm"}); len(got) != 1 || !strings.Contains(got[0], "permanent=true") || !strings.Contains(got[0], "never") {
		t.Errorf("permanent error: %v", got)
	}
	// A cycle across two modules stops at the depth limit.
	if got := v.ask("src-loop", Ask{Who: "loop"}); len(got) != 1 || !strings.Contains(got[0], "depth limit") || !strings.Contains(got[0], "permanent=true") {
		t.Errorf("cross-module cycle: %v", got)
	}

	// One target replica goes: traffic goes on on the other.
	stopBeta1()
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		got := v.ask("src", Ask{Who: "bob", N: 10})
		sort.Strings(got)
		for _, a := range got {
			if !strings.HasPrefix(a, "beta-0>") {
				return fmt.Errorf("after beta-1 stopped: %v", got)
			}
		}
		return nil
	})
}

// TestServerRefusesBadRequests: no token, a wrong module, oversized and
// malformed payloads are refused with clear codes, and the replica lives on.
func TestServerRefusesBadRequests(t *testing.T) {
	e := controlplanetest.Start(t)
	v := &env{t: t, e: e, ns: e.Namespace(t), ctx: controlplanetest.Context(t, time.Minute)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- replica.Run(ctx, replica.Options{Module: module.Info{Name: "gamma"}, Components: []module.Component{&echo{id: "g"}},
			Config: e.Config, Namespace: v.ns, Identity: "g", Leader: leader.Always, GRPCListener: ln, GRPCAddr: addr, GRPCToken: token})
	}()
	t.Cleanup(func() { cancel(); <-done })
	v.node("e", "gamma", "echo")

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := transportpb.NewModuleClient(conn)
	authed := metadata.AppendToOutgoingContext(v.ctx, "authorization", "Bearer "+token)
	call := func(ctx context.Context, m *transportpb.Message) (*transportpb.Result, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return c.Send(cctx, m, grpc.MaxCallSendMsgSize(16<<20))
	}
	ok := &transportpb.Message{Module: "gamma", To: "e.in", Data: []byte(`{"who":"x"}`)}
	controlplanetest.Eventually(t, 30*time.Second, func() error {
		res, err := call(authed, ok)
		if err != nil || string(res.GetData()) != `"g"` {
			return fmt.Errorf("authorised call: %v %v", res, err)
		}
		return nil
	})
	cases := []struct {
		name string
		ctx  context.Context
		m    *transportpb.Message
		code codes.Code
	}{
		{"no token", v.ctx, ok, codes.Unauthenticated},
		{"wrong token", metadata.AppendToOutgoingContext(v.ctx, "authorization", "Bearer nope"), ok, codes.Unauthenticated},
		{"another module's node", authed, &transportpb.Message{Module: "delta", To: "e.in"}, codes.FailedPrecondition},
		{"unknown node", authed, &transportpb.Message{Module: "gamma", To: "ghost.in"}, codes.NotFound},
		{"unknown port", authed, &transportpb.Message{Module: "gamma", To: "e.nope"}, codes.NotFound},
		{"malformed payload", authed, &transportpb.Message{Module: "gamma", To: "e.in", Data: []byte(`{not json`)}, codes.InvalidArgument},
		{"oversized", authed, &transportpb.Message{Module: "gamma", To: "e.in", Data: make([]byte, 5<<20)}, codes.ResourceExhausted},
	}
	for _, tc := range cases {
		_, err := call(tc.ctx, tc.m)
		if status.Code(err) != tc.code {
			t.Errorf("%s: got %v, want %s", tc.name, err, tc.code)
		}
	}
	// A stream without the token is refused too.
	stream, err := c.Stream(v.ctx)
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("stream without a token: %v", err)
	}

	// The sender's deadline reaches the node across the wire, and ends it.
	client := transport.NewClient(fixed(addr), token)
	defer client.Close()
	dctx, dcancel := context.WithTimeout(v.ctx, 300*time.Millisecond)
	defer dcancel()
	res0 := client.Send(dctx, "gamma", scheduler.Msg{To: "e.in", Data: Ask{Who: "slow"}})
	if err, ok := res0.(error); !ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: got %v", res0)
	}
	select {
	case err := <-slowEnded:
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Errorf("the node's context ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the node's context outlived the sender's deadline")
	}
	// Over the stream, results and classes come back as over Send.
	if res := client.Send(v.ctx, "gamma", scheduler.Msg{To: "e.in", Data: Ask{Who: "x"}}); res != "g" {
		t.Errorf("stream result: %v", res)
	}
	if err, ok := client.Send(v.ctx, "gamma", scheduler.Msg{To: "ghost.in"}).(error); !ok || !module.IsPermanent(err) {
		t.Errorf("unknown node over the stream: %v", err)
	}

	// A wrong-typed payload is the node's permanent error, not a crash.
	res, err := call(authed, &transportpb.Message{Module: "gamma", To: "e.in", Data: []byte(`{"who": 5}`)})
	if err != nil || res.GetError() == nil || !res.GetError().GetPermanent() {
		t.Errorf("wrong-typed payload: %v %v", res, err)
	}
	if res, err := call(authed, ok); err != nil || string(res.GetData()) != `"g"` {
		t.Errorf("the replica after bad requests: %v %v", res, err)
	}
}
