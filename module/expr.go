package module

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/go-logr/logr"

	"github.com/tinymod/tinymod/internal/mapping"
)

// Expr is a compiled expression over a message, in the language of edge
// mappings (docs/mapping.md): $ is the message in its JSON form.
type Expr struct{ e *mapping.Expr }

// CompileExpr compiles an expression such as `$.n > 10`.
func CompileExpr(src string) (*Expr, error) {
	e, err := mapping.CompileExpr(src)
	if err != nil {
		return nil, err
	}
	return &Expr{e: e}, nil
}

// Eval evaluates the expression against msg, any JSON-encodable value.
func (x *Expr) Eval(msg any) (any, error) {
	v, err := JSONValue(msg)
	if err != nil {
		return nil, err
	}
	return x.e.Eval(v)
}

// Bool evaluates the expression and requires a boolean.
func (x *Expr) Bool(msg any) (bool, error) {
	v, err := x.Eval(msg)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("expression gave %T, not a boolean", v)
	}
	return b, nil
}

// JSONValue returns v in its JSON form: maps, slices, strings, float64s,
// bools and nil. Raw JSON (json.RawMessage) is decoded.
func JSONValue(v any) (any, error) {
	var data []byte
	switch x := v.(type) {
	case nil, string, float64, bool, map[string]any, []any:
		return v, nil
	case json.RawMessage:
		data = x
	default:
		var err error
		if data, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("not JSON-encodable: %w", err)
		}
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return out, nil
}

type logKey struct{}

// WithLog returns ctx carrying a logger. The runtime sets one, naming the
// replica, the module and the node.
func WithLog(ctx context.Context, log logr.Logger) context.Context {
	return context.WithValue(ctx, logKey{}, log)
}

// WithLogFunc returns ctx carrying a logger that make makes the first time
// it is asked for: a runtime gives each node one this way, since most
// nodes never log and a logger with values of its own costs memory.
func WithLogFunc(ctx context.Context, make func() logr.Logger) context.Context {
	return context.WithValue(ctx, logKey{}, &lazyLog{make: make})
}

type lazyLog struct {
	once sync.Once
	make func() logr.Logger
	log  logr.Logger
}

func (l *lazyLog) get() logr.Logger {
	l.once.Do(func() { l.log, l.make = l.make(), nil })
	return l.log
}

// Log returns the logger of the node a message was delivered to: structured,
// with the replica's identity, the module and the node. It discards when the
// context carries none.
func Log(ctx context.Context) logr.Logger {
	switch l := ctx.Value(logKey{}).(type) {
	case logr.Logger:
		return l
	case *lazyLog:
		return l.get()
	}
	return logr.Discard()
}
