package record

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"

	"github.com/tani-platform/tani/internal/apperr"
)

// maxFieldErrors bounds the field errors one record can produce.
const maxFieldErrors = 20

// typedDecoder fills Go values from a parsed tree. Keys must name a field
// exactly (encoding/json would also take "FARMER_ID" for farmer_id), every
// value must have the field's JSON type, and fixed-size arrays (a position
// is [longitude, latitude]) must have exactly their length: a third number
// is refused, not dropped.
type typedDecoder struct {
	path []pathElem
	errs []apperr.FieldError
	// raw returns the canonical bytes of a value decoded into a
	// json.RawMessage (the envelope's payload).
	raw func(*value) []byte
}

var rawMessageType = reflect.TypeFor[json.RawMessage]()

func (d *typedDecoder) fail(format string, args ...any) {
	if len(d.errs) < maxFieldErrors {
		d.errs = append(d.errs, apperr.FieldError{Field: formatPath(d.path), Message: fmt.Sprintf(format, args...)})
	}
}

func (d *typedDecoder) wrongType(want string, v *value) {
	d.fail("must be %s, not %s", want, v.kind)
}

// decode sets dst from v.
func (d *typedDecoder) decode(v *value, dst reflect.Value) {
	t := dst.Type()
	if t == rawMessageType {
		if v.kind != kindObject {
			d.wrongType("an object", v)
			return
		}
		dst.SetBytes(d.raw(v))
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.kind == kindNull {
			dst.SetZero()
			return
		}
		if dst.IsNil() {
			dst.Set(reflect.New(t.Elem()))
		}
		d.decode(v, dst.Elem())
	case reflect.Struct:
		if v.kind != kindObject {
			d.wrongType("an object", v)
			return
		}
		fields := fieldsOfType(t)
		for i := range v.kids {
			m := &v.kids[i]
			d.path = append(d.path, pathElem{key: m.key, index: -1})
			if f, ok := fields[m.key]; ok {
				d.decode(&m.val, dst.Field(f))
			} else {
				d.fail("unknown field")
			}
			d.path = d.path[:len(d.path)-1]
		}
	case reflect.String:
		if v.kind != kindString {
			d.wrongType("a string", v)
			return
		}
		dst.SetString(v.str)
	case reflect.Bool:
		if v.kind != kindBool {
			d.wrongType("a boolean", v)
			return
		}
		dst.SetBool(v.b)
	case reflect.Float64:
		if v.kind != kindNumber {
			d.wrongType("a number", v)
			return
		}
		dst.SetFloat(v.num)
	case reflect.Int, reflect.Int64:
		if v.kind != kindNumber {
			d.wrongType("an integer", v)
			return
		}
		if v.num != math.Trunc(v.num) {
			d.fail("must be an integer, not %s", appendNumber(nil, v.num))
			return
		}
		dst.SetInt(int64(v.num)) // |num| < 2^53: exact
	case reflect.Slice:
		if v.kind == kindNull {
			dst.SetZero()
			return
		}
		if v.kind != kindArray {
			d.wrongType("an array", v)
			return
		}
		s := reflect.MakeSlice(t, v.elems(), v.elems())
		d.elements(v, s)
		dst.Set(s)
	case reflect.Array:
		if v.kind != kindArray {
			d.wrongType("an array", v)
			return
		}
		if v.elems() != t.Len() {
			d.fail("must have exactly %d elements, not %d%s", t.Len(), v.elems(), arrayHint(t))
			return
		}
		d.elements(v, dst)
	default:
		panic(fmt.Sprintf("record: no JSON decoding for %s", t)) // a payload type uses a kind this decoder lacks
	}
}

// elements decodes an array's elements into the slice or array dst.
func (d *typedDecoder) elements(v *value, dst reflect.Value) {
	if v.nums != nil && dst.Type().Elem().Kind() == reflect.Float64 {
		for i, f := range v.nums { // positions, in bulk
			dst.Index(i).SetFloat(f)
		}
		return
	}
	for i := range v.elems() {
		d.path = append(d.path, pathElem{index: i})
		d.decode(v.elem(i), dst.Index(i))
		d.path = d.path[:len(d.path)-1]
		if len(d.errs) >= maxFieldErrors {
			return
		}
	}
}

// arrayHint explains the one fixed-size array of the record format.
func arrayHint(t reflect.Type) string {
	if t.Len() == 2 && t.Elem().Kind() == reflect.Float64 {
		return ": a position is [longitude, latitude]; altitude is not accepted"
	}
	return ""
}

// fieldCache maps a struct type to its fields by exact JSON name.
var fieldCache sync.Map // reflect.Type → map[string]int

func fieldsOfType(t reflect.Type) map[string]int {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]int)
	}
	fields := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = i
	}
	fieldCache.Store(t, fields)
	return fields
}
