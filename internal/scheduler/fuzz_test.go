package scheduler

import (
	"context"
	"encoding/json"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
	"github.com/tinymod/tinymod/module"
)

// FuzzSettingsDecode feeds arbitrary settings to a node: they are accepted or
// reported as a problem, never a panic, and the node keeps answering.
func FuzzSettingsDecode(f *testing.F) {
	for _, seed := range []string{`{"prefix":"x","times":2}`, `{"times":0}`, `{"prefix":5}`, `null`, `[]`, `"s"`, `{"times":1e400}`, `{`} {
		f.Add([]byte(seed))
	}
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&relay{}, &sink{}}, Leader: leader.Always})
	if err != nil {
		f.Fatal(err)
	}
	s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "sink"}})
	f.Fuzz(func(t *testing.T, raw []byte) {
		n := &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "relay",
			Edges: []v1alpha1.TinyNodeEdge{{ID: "e", Port: "out", To: "c.in"}}}}
		if json.Valid(raw) {
			n.Spec.Ports = []v1alpha1.TinyNodePortConfig{{Port: v1alpha1.SettingsPort, Configuration: &apiextensionsv1.JSON{Raw: raw}}}
		}
		s.Update(context.Background(), n)
		if res := s.Handle(context.Background(), Msg{To: "a.in", Data: Greeting{Who: "x"}}); res != "got x" {
			t.Fatalf("after settings %s the node answers %v", raw, res)
		}
	})
}

// FuzzMessageData feeds arbitrary JSON as a message (as a TinySignal's data
// or a gRPC payload arrives): decoded or refused with a permanent error,
// never a panic.
func FuzzMessageData(f *testing.F) {
	for _, seed := range []string{`{"who":"a","count":1}`, `{"who":5}`, `null`, `[1,2]`, `"x"`, `true`, `{"count":"9"}`, `{"who":"a","extra":{"deep":[1]}}`} {
		f.Add([]byte(seed))
	}
	s, err := New(Options{Module: module.Info{Name: "m"}, Components: []module.Component{&sink{}}, Leader: leader.Always})
	if err != nil {
		f.Fatal(err)
	}
	s.Update(context.Background(), &v1alpha1.TinyNode{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: v1alpha1.TinyNodeSpec{Module: "m", Component: "sink"}})
	f.Fuzz(func(t *testing.T, raw []byte) {
		res := s.Handle(context.Background(), Msg{To: "c.in", Data: json.RawMessage(raw)})
		if err, ok := res.(error); ok && !module.IsPermanent(err) {
			t.Fatalf("data %q: a transient error %v for bad input", raw, err)
		}
	})
}
