package mapping

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// A message's JSON form (maps, slices, strings, float64s, bools, nil) is what
// expressions read, and a mapping's result is decoded into the target port's
// Go type. Through encoding/json both cost a round trip of the whole value;
// JSONForm and DecodeForm walk the Go value instead, with what they learn of
// each type kept. They give exactly what the round trip gives, and report
// false for anything whose JSON they do not work out themselves (a type with
// its own MarshalJSON or UnmarshalJSON, embedded structs, ",string" fields,
// invalid UTF-8, a value of the wrong type, ...): the caller then takes the
// JSON path, which also gives the error.

// maxFormDepth bounds the nesting JSONForm and DecodeForm walk (a cyclic
// value goes to the JSON path, which reports it).
const maxFormDepth = 64

// JSONForm returns v as json.Marshal followed by json.Unmarshal into an any
// would, and false when it leaves v to that round trip.
func JSONForm(v any) (any, bool) {
	switch v.(type) {
	case nil, string, float64, bool, map[string]any, []any:
		return v, true // taken as it is, as the runtime always has
	}
	return toForm(reflect.ValueOf(v), 0)
}

func toForm(v reflect.Value, depth int) (any, bool) {
	if depth > maxFormDepth {
		return nil, false
	}
	t := v.Type()
	info := infoOf(t)
	if info.custom {
		return nil, false
	}
	switch t.Kind() {
	case reflect.Bool:
		return v.Bool(), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(v.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return float64(v.Uint()), true
	case reflect.Float64:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, false
		}
		return f, true
	case reflect.Float32:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, false
		}
		// Encoded with float32's shortest digits, read back as a float64.
		g, err := strconv.ParseFloat(strconv.FormatFloat(f, 'g', -1, 32), 64)
		return g, err == nil
	case reflect.String:
		s := v.String()
		if !utf8.ValidString(s) {
			return nil, false
		}
		return s, true
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return nil, true
		}
		return toForm(v.Elem(), depth+1)
	case reflect.Struct:
		out := make(map[string]any, len(info.fields))
		for i := range info.fields {
			f := &info.fields[i]
			fv := v.Field(f.index)
			if f.omitEmpty && isEmpty(fv) || f.omitZero && fv.IsZero() {
				continue
			}
			x, ok := toForm(fv, depth+1)
			if !ok {
				return nil, false
			}
			out[f.name] = x
		}
		return out, true
	case reflect.Map:
		if v.IsNil() {
			return nil, true
		}
		out := make(map[string]any, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			k := iter.Key().String()
			if !utf8.ValidString(k) {
				return nil, false
			}
			x, ok := toForm(iter.Value(), depth+1)
			if !ok {
				return nil, false
			}
			out[k] = x
		}
		return out, true
	case reflect.Slice:
		if v.IsNil() {
			return nil, true
		}
		if info.bytes {
			return base64.StdEncoding.EncodeToString(v.Bytes()), true
		}
		fallthrough
	case reflect.Array:
		out := make([]any, v.Len())
		for i := range out {
			x, ok := toForm(v.Index(i), depth+1)
			if !ok {
				return nil, false
			}
			out[i] = x
		}
		return out, true
	}
	return nil, false
}

func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

// DecodeForm decodes form, a value in JSON form, into dst (settable) as
// json.Unmarshal of its encoding would, over what dst holds. False means it
// left the work to json.Unmarshal; dst may then be partly written.
func DecodeForm(form any, dst reflect.Value) bool {
	return fromForm(form, dst, 0)
}

func fromForm(form any, v reflect.Value, depth int) bool {
	if depth > maxFormDepth {
		return false
	}
	t := v.Type()
	info := infoOf(t)
	if info.custom {
		return false
	}
	if form == nil {
		switch t.Kind() {
		case reflect.Interface, reflect.Pointer, reflect.Map, reflect.Slice:
			if t.Kind() == reflect.Interface && !v.IsNil() && v.Elem().Kind() == reflect.Pointer {
				return false // json decodes null into what such a pointer holds
			}
			v.SetZero()
		}
		return true // null leaves any other value as it is
	}
	switch t.Kind() {
	case reflect.Interface:
		if t.NumMethod() != 0 || !v.IsNil() && v.Elem().Kind() == reflect.Pointer {
			return false
		}
		c, ok := copyForm(form, depth)
		if ok {
			v.Set(reflect.ValueOf(&c).Elem())
		}
		return ok
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		return fromForm(form, v.Elem(), depth+1)
	case reflect.Bool:
		b, ok := form.(bool)
		if ok {
			v.SetBool(b)
		}
		return ok
	case reflect.String:
		s, ok := form.(string)
		if !ok || !utf8.ValidString(s) {
			return false
		}
		v.SetString(s)
		return true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		f, ok := form.(float64)
		// Below 2^53 an integral float64 is written as its integer.
		if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 || v.OverflowInt(int64(f)) {
			return false
		}
		v.SetInt(int64(f))
		return true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		f, ok := form.(float64)
		if !ok || f != math.Trunc(f) || f < 0 || math.Signbit(f) || f > 1<<53 || v.OverflowUint(uint64(f)) {
			return false
		}
		v.SetUint(uint64(f))
		return true
	case reflect.Float64:
		f, ok := form.(float64)
		if ok {
			v.SetFloat(f)
		}
		return ok
	case reflect.Float32:
		f, ok := form.(float64)
		if !ok {
			return false
		}
		g, err := strconv.ParseFloat(strconv.FormatFloat(f, 'g', -1, 64), 32)
		if err != nil || v.OverflowFloat(g) {
			return false
		}
		v.SetFloat(g)
		return true
	case reflect.Struct:
		m, ok := form.(map[string]any)
		if !ok {
			return false
		}
		for k, x := range m {
			f := info.byName[k]
			if f == nil {
				if info.folds(k) {
					return false // json matches it case-insensitively, maybe among others
				}
				continue // json ignores it
			}
			if !fromForm(x, v.Field(f.index), depth+1) {
				return false
			}
		}
		return true
	case reflect.Map:
		m, ok := form.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			return false
		}
		if v.IsNil() {
			v.Set(reflect.MakeMapWithSize(t, len(m)))
		}
		for k, x := range m {
			if !utf8.ValidString(k) {
				return false
			}
			elem := reflect.New(t.Elem()).Elem()
			if !fromForm(x, elem, depth+1) {
				return false
			}
			v.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), elem)
		}
		return true
	case reflect.Slice:
		a, ok := form.([]any)
		if !ok || info.bytes {
			return false
		}
		// json decodes element i over the element the slice holds, if any.
		s := reflect.MakeSlice(t, len(a), len(a))
		reflect.Copy(s, v)
		for i, x := range a {
			if !fromForm(x, s.Index(i), depth+1) {
				return false
			}
		}
		v.Set(s)
		return true
	case reflect.Array:
		a, ok := form.([]any)
		if !ok {
			return false
		}
		for i := range v.Len() {
			if i >= len(a) {
				v.Index(i).SetZero()
			} else if !fromForm(a[i], v.Index(i), depth+1) {
				return false
			}
		}
		return true
	}
	return false
}

// copyForm copies a value in JSON form, so that a decoded message never
// shares maps or slices with a template's literals; false for anything not
// in JSON form.
func copyForm(form any, depth int) (any, bool) {
	if depth > maxFormDepth {
		return nil, false
	}
	switch x := form.(type) {
	case nil, bool, float64:
		return x, true
	case string:
		return x, utf8.ValidString(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, ok := copyForm(e, depth+1)
			if !ok || !utf8.ValidString(k) {
				return nil, false
			}
			out[k] = c
		}
		return out, true
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, ok := copyForm(e, depth+1)
			if !ok {
				return nil, false
			}
			out[i] = c
		}
		return out, true
	}
	return nil, false
}

// typeInfo is what JSONForm and DecodeForm need to know of a type.
type typeInfo struct {
	// custom: the type's JSON is its own or unusual (Marshaler, Unmarshaler,
	// text marshalers, json.Number, a struct with embedded or ",string"
	// fields or names given twice, a map whose keys are not strings, a
	// complex number, a channel, a function): left to encoding/json.
	custom bool
	bytes  bool // a []byte-like slice, base64 in JSON
	fields []fieldInfo
	byName map[string]*fieldInfo
	names  []string // the fields' names, for keys json matches case-insensitively
}

type fieldInfo struct {
	index               int
	name                string
	omitEmpty, omitZero bool
}

func (info *typeInfo) folds(key string) bool {
	for _, name := range info.names {
		if strings.EqualFold(name, key) {
			return true
		}
	}
	return false
}

var typeInfos sync.Map // reflect.Type -> *typeInfo

var (
	marshalerType       = reflect.TypeFor[json.Marshaler]()
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	numberType          = reflect.TypeFor[json.Number]()
	zeroerType          = reflect.TypeFor[interface{ IsZero() bool }]()
)

func infoOf(t reflect.Type) *typeInfo {
	if info, ok := typeInfos.Load(t); ok {
		return info.(*typeInfo)
	}
	info, _ := typeInfos.LoadOrStore(t, buildInfo(t))
	return info.(*typeInfo)
}

func hasOwnJSON(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	for _, i := range []reflect.Type{marshalerType, unmarshalerType, textMarshalerType, textUnmarshalerType} {
		if t.Implements(i) || p.Implements(i) {
			return true
		}
	}
	return t == numberType
}

func buildInfo(t reflect.Type) *typeInfo {
	info := &typeInfo{}
	if hasOwnJSON(t) {
		info.custom = true
		return info
	}
	switch t.Kind() {
	case reflect.Complex64, reflect.Complex128, reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Invalid:
		info.custom = true
	case reflect.Map:
		if t.Key().Kind() != reflect.String || hasOwnJSON(t.Key()) {
			info.custom = true
		}
	case reflect.Slice:
		if e := t.Elem(); e.Kind() == reflect.Uint8 && !hasOwnJSON(e) {
			info.bytes = true
		}
	case reflect.Struct:
		info.byName = map[string]*fieldInfo{}
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if sf.Anonymous {
				if tag == "-" {
					continue
				}
				info.custom = true // promoted fields: encoding/json's rules
				return info
			}
			if !sf.IsExported() || tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if !validTag(name) {
				name = ""
			}
			if name == "" {
				name = sf.Name
			}
			f := fieldInfo{index: i, name: name}
			for opt := range strings.SplitSeq(opts, ",") {
				switch opt {
				case "omitempty":
					f.omitEmpty = true
				case "omitzero":
					if sf.Type.Implements(zeroerType) || reflect.PointerTo(sf.Type).Implements(zeroerType) {
						info.custom = true // its own IsZero
						return info
					}
					f.omitZero = true
				case "string":
					info.custom = true
					return info
				}
			}
			if info.byName[name] != nil {
				info.custom = true // json drops both, or keeps the tagged one
				return info
			}
			info.fields = append(info.fields, f)
			info.byName[name] = &info.fields[len(info.fields)-1]
		}
		// byName pointed into fields while it grew: point again.
		for i := range info.fields {
			info.byName[info.fields[i].name] = &info.fields[i]
			info.names = append(info.names, info.fields[i].name)
		}
	}
	return info
}

// validTag is encoding/json's test of a field name given in a tag.
func validTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}
