package httpserver

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
)

// cleanText is the one rule for text a client sends: valid UTF-8 without
// control characters (C0 but tab, line feed and carriage return; DEL; C1).
// A NUL cannot be stored by Postgres, so letting one through turns bad
// input into a 500 (or worse, into a record acknowledged and then never
// stored); an escape sequence in a name is a terminal escape waiting for
// the operator who lists it.
func cleanText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if isControl(r) {
			return false
		}
	}
	return true
}

func isControl(r rune) bool {
	switch r {
	case '\t', '\n', '\r':
		return false
	}
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)
}

const cleanMessage = "must be valid UTF-8 without control characters"

// cleanURL refuses, as invalid input, a request whose path or query holds
// a NUL, another control character or invalid UTF-8 (once decoded), or a
// query that does not decode: no handler ever sees one, so none can pass
// it on to Postgres.
func cleanURL(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		u := c.Request().URL
		if !cleanText(u.Path) || strings.ContainsAny(u.Path, "\t\n\r") {
			return apperr.Fields("invalid URL", apperr.FieldError{Field: "path", Message: cleanMessage})
		}
		query, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return apperr.Fields("invalid URL", apperr.FieldError{Field: "query", Message: "must be a well-formed query string"})
		}
		for name, values := range query {
			field := name
			if !cleanText(name) {
				field = "query"
			}
			for _, v := range append([]string{name}, values...) {
				if !cleanText(v) || strings.ContainsAny(v, "\t\n\r") {
					return apperr.Fields("invalid URL", apperr.FieldError{Field: field, Message: cleanMessage})
				}
			}
		}
		return next(c)
	}
}

// maxTextFields bounds the field errors one body can produce.
const maxTextFields = 20

// dirtyText returns a field error for every string in v (decoded JSON: a
// struct, map, slice or pointer to one) that is not clean text, named by
// its JSON path. Raw JSON ([]byte, json.RawMessage) is not looked into:
// whoever decodes it later checks it.
func dirtyText(v any) []apperr.FieldError {
	var out []apperr.FieldError
	walkText(reflect.ValueOf(v), "", &out)
	return out
}

func walkText(v reflect.Value, path string, out *[]apperr.FieldError) {
	if len(*out) >= maxTextFields || !v.IsValid() {
		return
	}
	name := func(p string) string {
		if p == "" {
			return "body"
		}
		return p
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkText(v.Elem(), path, out)
		}
	case reflect.String:
		if !cleanText(v.String()) {
			*out = append(*out, apperr.FieldError{Field: name(path), Message: cleanMessage})
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := strings.SplitN(f.Tag.Get("json"), ",", 2)[0]
			if tag == "-" {
				continue
			}
			if f.Anonymous && tag == "" {
				walkText(v.Field(i), path, out) // embedded: its fields are this object's
				continue
			}
			if tag == "" {
				tag = f.Name
			}
			walkText(v.Field(i), join(path, tag), out)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			k := iter.Key()
			key := fmt.Sprint(k.Interface())
			if k.Kind() == reflect.String && !cleanText(k.String()) {
				*out = append(*out, apperr.FieldError{Field: name(path), Message: "member names " + cleanMessage})
				continue
			}
			walkText(iter.Value(), join(path, key), out)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // raw bytes or raw JSON
		}
		for i := range v.Len() {
			walkText(v.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
