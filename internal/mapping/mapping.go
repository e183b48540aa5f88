// Package mapping evaluates edge mappings: JSON templates whose "{{ expr }}"
// strings are expressions over the incoming message, written in expr-lang
// (https://expr-lang.org) with the message as $.
//
//	{"user": "{{$.who}}", "greeting": "hello {{$.who}}!", "big": "{{$.n > 10}}"}
//
// A string that is one whole expression keeps the expression's type (a number
// stays a number); an expression inside a longer string is interpolated. A
// path that is missing gives null at any depth ($.a.b.c with no a is null).
package mapping

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
	"github.com/expr-lang/expr/vm/runtime"
)

const (
	open  = "{{"
	close = "}}"
	// maxNodes bounds the size of one expression.
	maxNodes = 1000
)

// Template is a compiled mapping, safe for concurrent use.
type Template struct {
	root node
	// members: every expression reads $ through constant member paths
	// only, so a struct message is read field by field (see goValue).
	members bool
}

type node interface {
	eval(st *evalState) (any, error)
}

// evalState is what one evaluation uses: the environment, whose $ is the
// message, and a VM. Both are kept for the next evaluation, so that a
// mapped message does not pay for them each time.
type evalState struct {
	env map[string]any
	vm  vm.VM
	gv  goValue // the message, when $ is read field by field
}

var evalStates = sync.Pool{New: func() any { return &evalState{env: make(map[string]any, 1)} }}

func evalWith(msg any, n node) (any, error) {
	st := evalStates.Get().(*evalState)
	st.env["$"] = msg
	out, err := n.eval(st)
	st.release()
	return out, err
}

// root makes msg the state's $: field by field when members allows it
// (see goValue), else in JSON form.
func (st *evalState) root(msg any, members bool) error {
	if members && st.gv.set(msg) {
		st.env["$"] = &st.gv
		return nil
	}
	form, err := Form(msg)
	st.env["$"] = form
	return err
}

// release returns the state to the pool, which must not keep the message
// alive.
func (st *evalState) release() {
	clear(st.env)
	clear(st.vm.Variables)
	st.gv = goValue{}
	evalStates.Put(st)
}

// Compile parses a JSON template and compiles every expression in it. The
// error names the expression that does not compile. A template is input from
// whoever writes a node, so a bug in compiling one is an error for that
// node, never a panic in the replica that reads it.
func Compile(template []byte) (t *Template, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("mapping cannot be compiled (a bug in the mapping compiler): %v", r)
		}
	}()
	var v any
	if err := json.Unmarshal(template, &v); err != nil {
		return nil, fmt.Errorf("mapping is not JSON: %w", err)
	}
	root, err := compileValue(v)
	if err != nil {
		return nil, err
	}
	return &Template{root: root, members: membersOnly(root)}, nil
}

func membersOnly(n node) bool {
	switch n := n.(type) {
	case exprNode:
		return n.members
	case interpolationNode:
		for _, p := range n.parts {
			if !membersOnly(p) {
				return false
			}
		}
	case objectNode:
		for _, v := range n.values {
			if !membersOnly(v) {
				return false
			}
		}
	case arrayNode:
		for _, v := range n.values {
			if !membersOnly(v) {
				return false
			}
		}
	}
	return true
}

// Eval evaluates the template against msg, a value in JSON form (maps, slices,
// strings, float64s, bools, nil), and returns a value in the same form.
func (t *Template) Eval(msg any) (any, error) {
	return evalWith(msg, t.root)
}

// EvalValue evaluates the template against msg, any value that encodes as
// JSON: as Eval of msg's JSON form, without building more of that form than
// the template reads.
func (t *Template) EvalValue(msg any) (any, error) {
	st := evalStates.Get().(*evalState)
	defer st.release()
	if err := st.root(msg, t.members); err != nil {
		return nil, err
	}
	return t.root.eval(st)
}

// EvalInto evaluates the template as EvalValue does and, when the template
// is an object and dst (settable) a struct, decodes its fields into dst
// over what it holds, as json.Unmarshal of the result would, without
// building the result. done false: dst may be partly written, and form is
// the result, for the caller to decode another way.
func (t *Template) EvalInto(msg any, dst reflect.Value) (done bool, form any, err error) {
	obj, ok := t.root.(objectNode)
	if !ok || dst.Kind() != reflect.Struct || infoOf(dst.Type()).custom {
		form, err = t.EvalValue(msg)
		return false, form, err
	}
	st := evalStates.Get().(*evalState)
	defer st.release()
	if err := st.root(msg, t.members); err != nil {
		return false, nil, err
	}
	info := infoOf(dst.Type())
	var buf [8]any
	values := buf[:0]
	if len(obj.keys) > len(buf) {
		values = make([]any, 0, len(obj.keys))
	}
	values = values[:len(obj.keys)]
	done = true
	for i, k := range obj.keys {
		if values[i], err = obj.values[i].eval(st); err != nil {
			return false, nil, err
		}
		if !done {
			continue
		}
		f := info.byName[k]
		switch {
		case f == nil:
			done = !info.folds(k) // json ignores it, or matches it case-insensitively
		case !fromForm(values[i], dst.Field(f.index), 1):
			done = false
		}
	}
	if done {
		return true, nil, nil
	}
	out := make(map[string]any, len(obj.keys))
	for i, k := range obj.keys {
		out[k] = values[i]
	}
	return false, out, nil
}

// HasExpressions reports whether the template reads the message at all.
func (t *Template) HasExpressions() bool {
	_, literal := t.root.(literalNode)
	return !literal
}

func compileValue(v any) (node, error) {
	switch v := v.(type) {
	case string:
		return compileString(v)
	case map[string]any:
		obj := objectNode{keys: make([]string, 0, len(v)), values: make([]node, 0, len(v))}
		literal := true
		for k, elem := range v {
			n, err := compileValue(elem)
			if err != nil {
				return nil, err
			}
			if _, ok := n.(literalNode); !ok {
				literal = false
			}
			obj.keys = append(obj.keys, k)
			obj.values = append(obj.values, n)
		}
		if literal {
			return literalNode{v}, nil
		}
		return obj, nil
	case []any:
		arr := arrayNode{values: make([]node, 0, len(v))}
		literal := true
		for _, elem := range v {
			n, err := compileValue(elem)
			if err != nil {
				return nil, err
			}
			if _, ok := n.(literalNode); !ok {
				literal = false
			}
			arr.values = append(arr.values, n)
		}
		if literal {
			return literalNode{v}, nil
		}
		return arr, nil
	default:
		return literalNode{v}, nil
	}
}

func compileString(s string) (node, error) {
	if !strings.Contains(s, open) {
		return literalNode{s}, nil
	}
	trimmed := strings.TrimSpace(s)
	if strings.HasPrefix(trimmed, open) && strings.HasSuffix(trimmed, close) &&
		strings.Count(trimmed, open) == 1 && strings.Count(trimmed, close) == 1 {
		return compileExpr(trimmed[len(open) : len(trimmed)-len(close)])
	}
	var parts []node
	rest := s
	for {
		i := strings.Index(rest, open)
		if i < 0 {
			if rest != "" {
				parts = append(parts, literalNode{rest})
			}
			break
		}
		j := strings.Index(rest[i:], close)
		if j < 0 {
			return nil, fmt.Errorf("expression %q: no closing %s", rest[i:], close)
		}
		if i > 0 {
			parts = append(parts, literalNode{rest[:i]})
		}
		e, err := compileExpr(rest[i+len(open) : i+j])
		if err != nil {
			return nil, err
		}
		parts = append(parts, e)
		rest = rest[i+j+len(close):]
	}
	return interpolationNode{parts}, nil
}

func compileExpr(src string) (exprNode, error) {
	src = strings.TrimSpace(src)
	rewritten, queries, err := rewriteQueries(src)
	if err != nil {
		return exprNode{}, fmt.Errorf("expression %q: %w", src, err)
	}
	opts := append([]expr.Option{
		// An environment typed as a map loads $ from it directly, not
		// through reflection.
		expr.Env(map[string]any{}),
		expr.AllowUndefinedVariables(),
		expr.MaxNodes(maxNodes),
		expr.Patch(optionalMembers{}),
		memberOption,
	}, append(arithmeticOptions, baseOptions...)...)
	p, err := expr.Compile(rewritten, append(opts, queries...)...)
	if err != nil {
		return exprNode{}, fmt.Errorf("expression %q: %w", src, err)
	}
	n := exprNode{p: p, src: src, members: len(queries) == 0 && readsMembersOnly(rewritten)}
	if len(queries) == 0 && rewritten == src && plainPath.MatchString(src) {
		n.path = strings.Split(src, ".")[1:]
	}
	return n, nil
}

// readPath reads path from v as member reads do (see member), and false
// when it meets something other than a JSON object or null.
func readPath(v any, path []string) (any, bool, error) {
	for _, key := range path {
		switch x := v.(type) {
		case nil:
			return nil, true, nil
		case map[string]any:
			v = x[key]
		case *goValue:
			var err error
			if v, err = x.member(key); err != nil {
				return nil, false, err
			}
		default:
			return nil, false, nil
		}
	}
	return v, true, nil
}

// optionalMembers turns every a.b and a[b] into a call of memberFunc, which
// gives null for a null a, so that a missing path is null instead of an
// error, and reads a JSON object without reflection.
type optionalMembers struct{}

const memberFunc = "__member"

func (optionalMembers) Visit(n *ast.Node) {
	if m, ok := (*n).(*ast.MemberNode); ok && !m.Method {
		ast.Patch(n, &ast.CallNode{Callee: &ast.IdentifierNode{Value: memberFunc}, Arguments: []ast.Node{m.Node, m.Property}})
	}
}

var memberOption = expr.Function(memberFunc, func(args ...any) (any, error) {
	if g, ok := args[0].(*goValue); ok {
		if k, ok := args[1].(string); ok {
			return g.member(k)
		}
	}
	return member(args[0], args[1]), nil
}, new(func(any, any) any))

// member is from.key, as expr-lang's a?.b reads it.
func member(from, key any) any {
	switch x := from.(type) {
	case nil:
		return nil
	case map[string]any:
		if k, ok := key.(string); ok {
			return x[k]
		}
	}
	return runtime.Fetch(from, key) // expr-lang's own, and its panic for what cannot be read
}

type literalNode struct{ v any }

func (n literalNode) eval(*evalState) (any, error) { return n.v, nil }

type exprNode struct {
	p   *vm.Program
	src string // as written, before JSONPath queries are rewritten
	// path is the keys of an expression that is only $.a.b...: read from
	// JSON objects without the VM, which reads anything else.
	path []string
	// members: $ is only read through constant member paths.
	members bool
}

// plainPath matches $.a.b... of identifiers.
var plainPath = regexp.MustCompile(`^\$(\.[A-Za-z_][A-Za-z0-9_]*)+$`)

func (n exprNode) eval(st *evalState) (any, error) {
	if n.path != nil {
		out, ok, err := readPath(st.env["$"], n.path)
		if err != nil {
			return nil, fmt.Errorf("expression %q: %w", n.src, err)
		}
		if ok {
			return normalize(out), nil
		}
	}
	out, err := st.vm.Run(n.p, st.env)
	if err != nil {
		return nil, fmt.Errorf("expression %q: %w", n.src, err)
	}
	out = normalize(out)
	if err := finite(out, 0); err != nil {
		return nil, fmt.Errorf("expression %q: %w", n.src, err)
	}
	return out, nil
}

// finite fails for a NaN or an infinity anywhere in v: JSON has neither, so
// no message could carry the result.
func finite(v any, depth int) error {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("the result is %v, which JSON cannot hold", x)
		}
	case []any:
		if depth > maxFormDepth {
			return nil
		}
		for _, e := range x {
			if err := finite(e, depth+1); err != nil {
				return err
			}
		}
	case map[string]any:
		if depth > maxFormDepth {
			return nil
		}
		for _, e := range x {
			if err := finite(e, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

type interpolationNode struct{ parts []node }

func (n interpolationNode) eval(st *evalState) (any, error) {
	var b strings.Builder
	for _, p := range n.parts {
		v, err := p.eval(st)
		if err != nil {
			return nil, err
		}
		switch v := v.(type) {
		case nil:
		case string:
			b.WriteString(v)
		default:
			data, err := json.Marshal(v)
			if err != nil {
				return nil, err
			}
			b.Write(data)
		}
	}
	return b.String(), nil
}

type objectNode struct {
	keys   []string
	values []node
}

func (n objectNode) eval(st *evalState) (any, error) {
	out := make(map[string]any, len(n.keys))
	for i, k := range n.keys {
		v, err := n.values[i].eval(st)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

type arrayNode struct{ values []node }

func (n arrayNode) eval(st *evalState) (any, error) {
	out := make([]any, len(n.values))
	for i, elem := range n.values {
		v, err := elem.eval(st)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// normalize turns expr's Go numbers into JSON's float64, so results compare
// and encode like decoded JSON.
func normalize(v any) any {
	switch x := v.(type) {
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case float64, string, bool, nil, map[string]any, []any:
		return v
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(rv.Uint())
	case reflect.Float32:
		return rv.Float()
	}
	return v
}

// Expr is one compiled expression over a message, $ being the message.
type Expr struct{ n exprNode }

// CompileExpr compiles src, an expression without the {{ }}, as in a template.
func CompileExpr(src string) (*Expr, error) {
	n, err := compileExpr(src)
	if err != nil {
		return nil, err
	}
	return &Expr{n: n}, nil
}

// Eval evaluates the expression against msg, a value in JSON form.
func (e *Expr) Eval(msg any) (any, error) {
	return evalWith(msg, e.n)
}
