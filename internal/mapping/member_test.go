package mapping

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// chainedMembers is how members were read before memberFunc: every a.b an
// optional chain a?.b run by expr-lang itself.
type chainedMembers struct{}

func (chainedMembers) Visit(n *ast.Node) {
	if m, ok := (*n).(*ast.MemberNode); ok && !m.Optional && !m.Method {
		m.Optional = true
		chain := &ast.ChainNode{Node: m}
		chain.SetType(m.Type())
		ast.Patch(n, chain)
	}
}

// TestMembersReadAsOptionalChains: memberFunc reads members as expr-lang's
// optional chains do, values and failures alike.
func TestMembersReadAsOptionalChains(t *testing.T) {
	var msg any
	if err := json.Unmarshal([]byte(`{"a":{"b":{"c":1}},"list":[{"name":"x"},2,"s"],"s":"hello","n":3,"i":1,
		"odd key":true,"m":{"1":"one"},"null":null}`), &msg); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{
		`$.a`, `$.a.b.c`, `$.a.x.y`, `$.list[0]`, `$.list[-1]`, `$.list[5]`, `$["odd key"]`, `$.s.x`, `$.n.x`,
		`$.list.x`, `$.m[1]`, `$.m["1"]`, `$.list["x"]`, `$.list[0].name`, `$.missing[0]`, `split($.s, 'l')[0]`,
		`$.a?.b`, `$.list[1:2]`, `$.list[$.i]`, `$.null.x`, `$.list[1.0]`, `$.a.b.c + 1`, `$.s[1]`, `$`,
	} {
		old, err := expr.Compile(src, append([]expr.Option{expr.AllowUndefinedVariables(), expr.Patch(chainedMembers{})},
			append(arithmeticOptions, baseOptions...)...)...)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		want, werr := expr.Run(old, map[string]any{"$": msg})
		e, cerr := CompileExpr(src)
		if cerr != nil {
			t.Errorf("%s: %v", src, cerr)
			continue
		}
		got, gerr := e.Eval(msg)
		if (werr == nil) != (gerr == nil) || werr == nil && !reflect.DeepEqual(got, normalize(want)) {
			t.Errorf("%s: got %#v, %v; optional chains give %#v, %v", src, got, gerr, normalize(want), werr)
		}
	}
}
