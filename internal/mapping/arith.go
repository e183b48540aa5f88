package mapping

import (
	"fmt"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// Names of the functions + and - become, so that strings holding times and
// durations add as the TinySystems SDK adds them.
const (
	addFunc = "__add"
	subFunc = "__sub"
)

// arithmetic turns a + b and a - b into calls of addFunc and subFunc.
type arithmetic struct{}

func (arithmetic) Visit(n *ast.Node) {
	b, ok := (*n).(*ast.BinaryNode)
	if !ok || b.Operator != "+" && b.Operator != "-" {
		return
	}
	fn := addFunc
	if b.Operator == "-" {
		fn = subFunc
	}
	ast.Patch(n, &ast.CallNode{Callee: &ast.IdentifierNode{Value: fn}, Arguments: []ast.Node{b.Left, b.Right}})
}

var arithmeticOptions = []expr.Option{
	expr.Patch(arithmetic{}),
	expr.Function(addFunc, func(args ...any) (any, error) { return add(args[0], args[1]) }),
	expr.Function(subFunc, func(args ...any) (any, error) { return sub(args[0], args[1]) }),
}

// add is a + b: numbers add (ints stay ints); strings join, except that a
// duration ("90s", "1h") adds to an RFC 3339 time, giving a time, and to
// another duration, giving seconds ("5400s"), as the SDK's evaluator does;
// Go times and durations add as Go's. Anything else, a string and a number
// first of all, is an error.
func add(a, b any) (any, error) {
	if x, y, ok := ints(a, b); ok {
		return x + y, nil
	}
	if x, y, ok := floats(a, b); ok {
		return x + y, nil
	}
	if x, ok := a.(string); ok {
		y, ok := b.(string)
		if !ok {
			return nil, fmt.Errorf("cannot add %s and %s", kind(a), kind(b))
		}
		if t, ok := rfc3339(x); ok {
			if d, err := time.ParseDuration(y); err == nil {
				return t.Add(d).Format(time.RFC3339), nil
			}
		}
		if t, ok := rfc3339(y); ok {
			if d, err := time.ParseDuration(x); err == nil {
				return t.Add(d).Format(time.RFC3339), nil
			}
		}
		if dx, errX := time.ParseDuration(x); errX == nil {
			if dy, errY := time.ParseDuration(y); errY == nil {
				return fmt.Sprintf("%vs", dx.Seconds()+dy.Seconds()), nil
			}
		}
		return x + y, nil
	}
	switch x := a.(type) {
	case time.Time:
		if d, ok := b.(time.Duration); ok {
			return x.Add(d), nil
		}
	case time.Duration:
		switch y := b.(type) {
		case time.Duration:
			return x + y, nil
		case time.Time:
			return y.Add(x), nil
		}
	}
	return nil, fmt.Errorf("cannot add %s and %s", kind(a), kind(b))
}

// sub is a - b, as add is a + b: a duration comes off an RFC 3339 time, and
// two durations give seconds; strings do not otherwise subtract.
func sub(a, b any) (any, error) {
	if x, y, ok := ints(a, b); ok {
		return x - y, nil
	}
	if x, y, ok := floats(a, b); ok {
		return x - y, nil
	}
	if x, ok := a.(string); ok {
		if y, ok := b.(string); ok {
			if t, ok := rfc3339(x); ok {
				if d, err := time.ParseDuration(y); err == nil {
					return t.Add(-d).Format(time.RFC3339), nil
				}
			}
			if dx, errX := time.ParseDuration(x); errX == nil {
				if dy, errY := time.ParseDuration(y); errY == nil {
					return fmt.Sprintf("%vs", dx.Seconds()-dy.Seconds()), nil
				}
			}
		}
	}
	switch x := a.(type) {
	case time.Time:
		switch y := b.(type) {
		case time.Duration:
			return x.Add(-y), nil
		case time.Time:
			return x.Sub(y), nil
		}
	case time.Duration:
		if y, ok := b.(time.Duration); ok {
			return x - y, nil
		}
	}
	return nil, fmt.Errorf("cannot subtract %s from %s", kind(b), kind(a))
}

func rfc3339(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}

func ints(a, b any) (int, int, bool) {
	x, ok1 := a.(int)
	y, ok2 := b.(int)
	return x, y, ok1 && ok2
}

func floats(a, b any) (float64, float64, bool) {
	x, ok1 := number(a)
	y, ok2 := number(b)
	return x, y, ok1 && ok2
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	case float32:
		return float64(n), true
	}
	return 0, false
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	if _, ok := number(v); ok {
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}
