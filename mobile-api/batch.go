package mobileapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
)

// readBatch reads a /sync body: one JSON object whose only member is
// "records", an array. The records are only delimited here, in one pass
// over the body; record.Decode then reads each one strictly. Decoding the
// batch with encoding/json would scan a multi-megabyte body twice before
// a single record is looked at, and a record too large to be one is
// refused without ever being parsed.
func readBatch(c echo.Context) (SyncRequest, error) {
	var req SyncRequest
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" && !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		return req, apperr.Fields("body must be JSON", apperr.FieldError{Field: "Content-Type", Message: "must be application/json"})
	}
	// The body limit has already refused a larger Content-Length.
	buf := bytes.NewBuffer(make([]byte, 0, max(min(c.Request().ContentLength, 8<<20), 0)+bytes.MinRead))
	_, err := buf.ReadFrom(c.Request().Body)
	body := buf.Bytes()
	if err != nil {
		var limit *echo.HTTPError // echo's body limit: already a 413
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &limit):
			return req, limit
		case errors.As(err, &tooLarge):
			return req, apperr.Errorf(apperr.TooLarge, "body exceeds %d bytes", tooLarge.Limit)
		}
		return req, fmt.Errorf("read sync body: %w", err)
	}
	s := batchScanner{b: body}
	req.Records, err = s.batch()
	return req, err
}

// batchScanner delimits the records of a sync body. It checks the JSON
// structure around and between the records, and only the nesting of
// brackets and strings inside them.
type batchScanner struct {
	b   []byte
	pos int
}

func (s *batchScanner) fail(what string) error {
	if s.pos >= len(s.b) {
		return apperr.Fields("malformed JSON", apperr.FieldError{Field: "body", Message: "unexpected end of JSON: " + what})
	}
	return apperr.Fields("malformed JSON", apperr.FieldError{Field: "body", Message: fmt.Sprintf("syntax error at byte %d: %s", s.pos, what)})
}

func (s *batchScanner) space() {
	for s.pos < len(s.b) && (s.b[s.pos] == ' ' || s.b[s.pos] == '\t' || s.b[s.pos] == '\n' || s.b[s.pos] == '\r') {
		s.pos++
	}
}

// next skips white space and reports whether c comes next, taking it.
func (s *batchScanner) next(c byte) bool {
	s.space()
	if s.pos < len(s.b) && s.b[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

func (s *batchScanner) batch() ([]json.RawMessage, error) {
	if !s.next('{') {
		if s.pos >= len(s.b) {
			return nil, apperr.Fields("body is empty", apperr.FieldError{Field: "body", Message: "a JSON object is required"})
		}
		return nil, apperr.Fields("body must be a JSON object", apperr.FieldError{Field: "body", Message: "must be a JSON object"})
	}
	var records []json.RawMessage
	seen := false
	if !s.next('}') {
		for {
			s.space()
			start := s.pos
			if !s.next('"') || !s.skipString() {
				return nil, s.fail("expected a quoted key")
			}
			key := string(s.b[start+1 : s.pos-1])
			switch {
			case key != "records":
				if len(key) > 64 {
					key = key[:64] + "…"
				}
				return nil, apperr.Fields("unknown field", apperr.FieldError{Field: key, Message: "unknown field"})
			case seen:
				return nil, apperr.Fields("records twice", apperr.FieldError{Field: "records", Message: "appears twice"})
			}
			seen = true
			if !s.next(':') {
				return nil, s.fail("expected : after a key")
			}
			var err error
			if records, err = s.records(); err != nil {
				return nil, err
			}
			if s.next('}') {
				break
			}
			if !s.next(',') {
				return nil, s.fail("expected , or } in an object")
			}
		}
	}
	if s.space(); s.pos < len(s.b) {
		return nil, apperr.Fields("body must hold exactly one JSON value", apperr.FieldError{Field: "body", Message: "unexpected data after the JSON value"})
	}
	return records, nil
}

// records reads the records array (null is no array, for the validator
// to call missing).
func (s *batchScanner) records() ([]json.RawMessage, error) {
	s.space()
	if strings.HasPrefix(string(s.b[s.pos:min(s.pos+4, len(s.b))]), "null") {
		s.pos += 4
		return nil, nil
	}
	if !s.next('[') {
		return nil, apperr.Fields("wrong type", apperr.FieldError{Field: "records", Message: "must be an array"})
	}
	records := []json.RawMessage{}
	if s.next(']') {
		return records, nil
	}
	for {
		s.space()
		start := s.pos
		if err := s.skipValue(); err != nil {
			return nil, err
		}
		if s.pos == start {
			return nil, s.fail("a value is missing")
		}
		records = append(records, json.RawMessage(s.b[start:s.pos:s.pos]))
		if s.next(']') {
			return records, nil
		}
		if !s.next(',') {
			return nil, s.fail("expected , or ] in an array")
		}
	}
}

// skipString moves past a string whose opening quote was taken.
func (s *batchScanner) skipString() bool {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case '"':
			s.pos++
			return true
		case '\\':
			s.pos += 2
		default:
			s.pos++
		}
	}
	return false
}

// skipValue moves past one value, matching brackets. What is between them
// is left to record.Decode.
func (s *batchScanner) skipValue() error {
	var open []byte // brackets still open
	for s.pos < len(s.b) {
		c := s.b[s.pos]
		switch {
		case c == '"':
			s.pos++
			if !s.skipString() {
				return s.fail("a string is not closed")
			}
		case c == '{' || c == '[':
			if len(open) == 64 {
				return s.fail("nested too deeply")
			}
			open = append(open, c)
			s.pos++
		case c == '}' || c == ']':
			if len(open) == 0 {
				return nil // the end of the records array
			}
			if want := open[len(open)-1]; (c == '}') != (want == '{') {
				return s.fail("brackets do not match")
			}
			open = open[:len(open)-1]
			s.pos++
		case c == ',' && len(open) == 0:
			return nil
		default:
			s.pos++
		}
		if len(open) == 0 && (c == '}' || c == ']' || c == '"') {
			return nil
		}
	}
	if len(open) > 0 {
		return s.fail("an array or object is not closed")
	}
	return nil
}
