package mapping

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// A message arrives as a Go value. An expression that reads it only
// through constant member paths ($.a, $.a.b, $["a"]) does not need all of
// it in JSON form: goValue hands out the fields it reads, each put in JSON
// form as it is read, and the rest is never built.

// goValue is a struct message whose fields are read one by one.
type goValue struct {
	v    reflect.Value
	info *typeInfo
}

// set makes g msg, and false when msg is not a struct (or a pointer to
// one) whose JSON form JSONForm would work out.
func (g *goValue) set(msg any) bool {
	v := reflect.ValueOf(msg)
	for v.Kind() == reflect.Pointer {
		if v.IsNil() || infoOf(v.Type()).custom {
			return false
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return false
	}
	info := infoOf(v.Type())
	if info.custom {
		return false
	}
	*g = goValue{v: v, info: info}
	return true
}

// member is what the message's JSON form holds under key: null for a field
// that its JSON leaves out.
func (g *goValue) member(key string) (any, error) {
	f := g.info.byName[key]
	if f == nil {
		return nil, nil
	}
	fv := g.v.Field(f.index)
	if f.omitEmpty && isEmpty(fv) || f.omitZero && fv.IsZero() {
		return nil, nil
	}
	if form, ok := toForm(fv, 1); ok {
		return form, nil
	}
	return jsonRoundTrip(fv.Interface())
}

// Form returns v in JSON form: as JSONForm gives it, or else through a JSON
// round trip, whose error it returns.
func Form(v any) (any, error) {
	if form, ok := JSONForm(v); ok {
		return form, nil
	}
	return jsonRoundTrip(v)
}

func jsonRoundTrip(v any) (any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("message is not JSON-encodable: %w", err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// readsMembersOnly reports whether src, an expression, uses $ only as the
// base of constant member reads, so that $ may be a goValue.
func readsMembersOnly(src string) bool {
	tree, err := parser.Parse(src)
	if err != nil {
		return false
	}
	var c dollarUses
	ast.Walk(&tree.Node, &c)
	return c.all == c.members
}

// dollarUses counts the uses of $, and those that are a constant member read.
type dollarUses struct{ all, members int }

func (c *dollarUses) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.IdentifierNode:
		if x.Value == "$" {
			c.all++
		}
	case *ast.MemberNode:
		if id, ok := x.Node.(*ast.IdentifierNode); ok && id.Value == "$" && !x.Method {
			if _, ok := x.Property.(*ast.StringNode); ok {
				c.members++
			}
		}
	}
}
