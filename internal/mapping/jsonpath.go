package mapping

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/theory/jsonpath"
	"github.com/theory/jsonpath/spec"
)

// JSONPath in expressions. Mappings written for the TinySystems SDK use
// JSONPath queries that expr-lang cannot read: descendants ($..name),
// wildcards ($.items[*]), filters ($.items[?(@.price > 10)]), unions
// ($.items[0,2]) and a slice followed by more segments ($.items[0:2].name).
// rewriteQueries replaces each such query with a call of a function that runs
// it with github.com/theory/jsonpath (RFC 9535); every other $ path stays
// expr-lang, so existing mappings read exactly as before.
//
// A query gives what the SDK gives: null when it selects nothing, the value
// when it selects one node, and a list when it selects several. A filter that
// happens to match one item therefore gives that item, not a list of one.

// lengthFunc is length(x) as the SDK has it: 0 for null, the number of items
// of a list, the length in bytes of a string, and 1 for anything else.
const lengthFunc = "length"

// memberLengthFunc evaluates a trailing .length: a list's length, or the
// member named length of an object.
const memberLengthFunc = "__member_length"

// queryFunc prefixes the functions that run rewritten queries.
const queryFunc = "__jsonpath"

var (
	sliceBracket = regexp.MustCompile(`^\s*-?\d*\s*:\s*-?\d*\s*(:\s*-?\d*\s*)?$`)
	unionItem    = regexp.MustCompile(`^\s*(-?\d+|'[^']*'|"[^"]*")\s*$`)
)

// baseOptions are the functions every expression may call: the SDK's
// length, hasprefix and hassuffix, and the helper for a trailing .length.
var baseOptions = []expr.Option{
	expr.Function(lengthFunc, func(args ...any) (any, error) { return sdkLength(args[0]), nil },
		new(func(any) float64)),
	expr.Function("hasprefix", stringTest(strings.HasPrefix), new(func(string, string) bool)),
	expr.Function("hassuffix", stringTest(strings.HasSuffix), new(func(string, string) bool)),
	expr.Function(memberLengthFunc, func(args ...any) (any, error) { return memberLength(args[0]), nil },
		new(func(any) any)),
}

func stringTest(test func(s, affix string) bool) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		s, ok1 := args[0].(string)
		affix, ok2 := args[1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("want two strings, got %T and %T", args[0], args[1])
		}
		return test(s, affix), nil
	}
}

func sdkLength(v any) float64 {
	switch v := v.(type) {
	case nil:
		return 0
	case []any:
		return float64(len(v))
	case string:
		return float64(len(v))
	}
	return 1
}

func memberLength(v any) any {
	switch v := v.(type) {
	case []any:
		return float64(len(v))
	case map[string]any:
		return v["length"]
	}
	return nil
}

// rewriteQueries returns src with each JSONPath-only query replaced by a call
// of a function, and the options that define those functions.
func rewriteQueries(src string) (string, []expr.Option, error) {
	if !strings.Contains(src, "$") {
		return src, nil, nil
	}
	var (
		b    strings.Builder
		opts []expr.Option
	)
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			j := skipString(src, i)
			b.WriteString(src[i:j])
			i = j
		case c == '$' && (i == 0 || !isIdent(src[i-1])) && (i+1 == len(src) || !isIdent(src[i+1])):
			j := scanQuery(src, i+1)
			call, opt, err := rewriteQuery(src[i:j], len(opts))
			if err != nil {
				return "", nil, err
			}
			b.WriteString(call)
			if opt != nil {
				opts = append(opts, opt)
			}
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), opts, nil
}

// rewriteQuery turns one $ query into what expr-lang should read; opt, if
// not nil, defines the function the result calls.
func rewriteQuery(q string, n int) (string, expr.Option, error) {
	prefix, length := trimLength(q)
	if !needsJSONPath(prefix) {
		if length {
			return memberLengthFunc + "(" + prefix + ")", nil, nil
		}
		return q, nil, nil
	}
	path, err := jsonpath.Parse(prefix)
	if err != nil {
		return "", nil, fmt.Errorf("JSONPath %s: %w", prefix, err)
	}
	sel := selection{path: path, ordered: !strings.Contains(prefix, "..") && !hasWildcardOrFilter(prefix)}
	name := fmt.Sprintf("%s%d", queryFunc, n)
	call := name + "($)"
	if length {
		call = memberLengthFunc + "(" + call + ")"
	}
	return call, expr.Function(name, func(args ...any) (any, error) { return sel.eval(args[0]), nil },
		new(func(any) any)), nil
}

// trimLength splits a trailing .length (or ['length']) off q.
func trimLength(q string) (string, bool) {
	for _, suffix := range []string{".length", "['length']", `["length"]`} {
		if p, ok := strings.CutSuffix(q, suffix); ok && p != "" && p != "$" {
			return p, true
		}
	}
	return q, false
}

// selection is a compiled JSONPath query.
type selection struct {
	path *jsonpath.Path
	// ordered is set when the query cannot visit an object's members, whose
	// order Go does not keep; other queries are sorted as the SDK sorts them.
	ordered bool
}

func (s selection) eval(msg any) any {
	if s.ordered {
		return collapse([]any(s.path.Select(msg)))
	}
	located := s.path.SelectLocated(msg)
	slices.SortStableFunc(located, func(a, b *spec.LocatedNode) int { return compareSDK(a.Path, b.Path) })
	nodes := make([]any, len(located))
	for i, n := range located {
		nodes[i] = n.Node
	}
	return collapse(nodes)
}

func collapse(nodes []any) any {
	switch len(nodes) {
	case 0:
		return nil
	case 1:
		return nodes[0]
	}
	return nodes
}

// compareSDK orders two selected nodes as the SDK's JSONPath library (ajson)
// returns them: by the order it visits their parents (a parent before its
// descendants; a container's child containers, keys sorted, before any
// grandchild), then by key or index within one parent.
func compareSDK(a, b spec.NormalizedPath) int {
	pa, pb := a[:max(len(a)-1, 0)], b[:max(len(b)-1, 0)]
	l := 0
	for l < len(pa) && l < len(pb) && compareSelector(pa[l], pb[l]) == 0 {
		l++
	}
	switch {
	case l == len(pa) && l == len(pb): // one parent
		if len(a) == 0 || len(b) == 0 {
			return cmp.Compare(len(a), len(b))
		}
		return compareSelector(a[len(a)-1], b[len(b)-1])
	case l == len(pa): // a's parent is an ancestor of b's
		return -1
	case l == len(pb):
		return 1
	case len(pa) == l+1 && len(pb) != l+1: // a's parent is a child of the common ancestor, b's deeper
		return -1
	case len(pb) == l+1 && len(pa) != l+1:
		return 1
	}
	return compareSelector(pa[l], pb[l])
}

func compareSelector(a, b spec.NormalSelector) int {
	switch a := a.(type) {
	case spec.Index:
		if b, ok := b.(spec.Index); ok {
			return cmp.Compare(a, b)
		}
		return -1
	case spec.Name:
		if b, ok := b.(spec.Name); ok {
			return cmp.Compare(a, b)
		}
		return 1
	}
	return 0
}

// needsJSONPath reports whether q uses syntax only JSONPath reads.
func needsJSONPath(q string) bool {
	segs := segments(q)
	for i, s := range segs {
		switch {
		case strings.HasPrefix(s, ".."), s == ".*":
			return true
		case strings.HasPrefix(s, "["):
			in := strings.TrimSpace(strings.TrimSuffix(s[1:], "]")) // "$[" is a bracket never closed
			if strings.HasPrefix(in, "?") || in == "*" || isUnion(in) {
				return true
			}
			// expr-lang slices strings and lists itself; JSONPath is
			// needed only to read on through the slice's items.
			if sliceBracket.MatchString(in) && i < len(segs)-1 {
				return true
			}
		}
	}
	return false
}

func hasWildcardOrFilter(q string) bool {
	for _, s := range segments(q) {
		in := strings.TrimSpace(strings.Trim(s, "[]"))
		if s == ".*" || strings.HasPrefix(s, "[") && (in == "*" || strings.HasPrefix(in, "?")) {
			return true
		}
	}
	return false
}

func isUnion(in string) bool {
	parts := splitTop(in, ',')
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		if !unionItem.MatchString(p) {
			return false
		}
	}
	return true
}

// segments splits a query scanned by scanQuery, without its $, into
// segments: ".name", "..name", ".*", "..*", "[...]", "..[...]".
func segments(q string) []string {
	var segs []string
	for i := 1; i < len(q); {
		j := i
		if strings.HasPrefix(q[j:], "..") {
			j += 2
		} else if q[j] == '.' {
			j++
		}
		switch {
		case j < len(q) && q[j] == '[':
			j = skipBracket(q, j)
		case j < len(q) && q[j] == '*':
			j++
		default:
			for j < len(q) && isIdent(q[j]) {
				j++
			}
		}
		if j == i {
			break
		}
		segs = append(segs, q[i:j])
		i = j
	}
	return segs
}

// scanQuery returns the end of the query whose $ ends at i.
func scanQuery(s string, i int) int {
	for i < len(s) {
		j := i
		switch {
		case strings.HasPrefix(s[j:], ".."):
			j += 2
		case s[j] == '.':
			j++
		case s[j] == '[':
			i = skipBracket(s, j)
			continue
		default:
			return i
		}
		switch {
		case j < len(s) && s[j] == '[' && s[j-1] == '.' && s[j-2] == '.':
			j = skipBracket(s, j)
		case j < len(s) && s[j] == '*':
			j++
		default:
			k := j
			for k < len(s) && isIdent(s[k]) {
				k++
			}
			if k == j {
				return i
			}
			j = k
		}
		i = j
	}
	return i
}

// skipBracket returns the index after the ] that closes the [ at i, or
// len(s) if none does.
func skipBracket(s string, i int) int {
	depth := 0
	for i < len(s) {
		switch s[i] {
		case '\'', '"', '`':
			i = skipString(s, i)
			continue
		case '[':
			depth++
		case ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
		i++
	}
	return i
}

// splitTop splits s at sep outside quotes, brackets and parentheses.
func splitTop(s string, sep byte) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '\'' || c == '"':
			i = skipString(s, i)
			continue
		case c == '[' || c == '(':
			depth++
		case c == ']' || c == ')':
			depth--
		case c == sep && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
		i++
	}
	return append(parts, s[start:])
}

// skipString returns the index after the string literal that opens at i.
func skipString(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if q != '`' {
				j++
			}
		case q:
			return j + 1
		}
	}
	return len(s)
}

func isIdent(c byte) bool {
	return c == '_' || c == '$' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
