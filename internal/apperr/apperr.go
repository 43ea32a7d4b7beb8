// Package apperr is Tani's one error vocabulary. Domain code returns these
// errors; the HTTP layer maps them to status codes, message handlers map them
// to ack decisions. It must never depend on a transport.
package apperr

import (
	"errors"
	"fmt"
	"time"
)

// Code classifies an error by what the caller can do about it.
type Code string

// The codes, deliberately few (WTF Dial's vocabulary plus the two HTTP needs).
const (
	Invalid      Code = "invalid"      // the input is wrong; retrying it unchanged will fail again
	NotFound     Code = "not_found"    // the thing asked for does not exist (or is not visible to the caller)
	Conflict     Code = "conflict"     // the input contradicts what is already stored
	Unauthorized Code = "unauthorized" // the caller is not authenticated
	Forbidden    Code = "forbidden"    // the caller is authenticated but may not do this
	TooLarge     Code = "too_large"    // the input exceeds a size limit
	Unavailable  Code = "unavailable"  // a dependency is down or the service is not ready; retry later
	TooMany      Code = "too_many"     // the caller tried too often; retry after Error.RetryAfter
	Internal     Code = "internal"     // a bug or an unexpected failure; details are logged, never shown
)

// FieldError names one invalid input field in the client's own terms
// (JSON path such as "records[3].captured_at").
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an application error with a code safe to show to clients.
type Error struct {
	Code    Code
	Message string       // safe for clients
	Fields  []FieldError // only for Invalid
	Err     error        // the cause, for logs only
	// RetryAfter says when the caller may try again (TooMany): the HTTP
	// answer carries it as Retry-After.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an error of the given code with a client-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Throttled returns a TooMany error: try again after retryAfter.
func Throttled(retryAfter time.Duration, format string, args ...any) *Error {
	return &Error{Code: TooMany, Message: fmt.Sprintf(format, args...), RetryAfter: retryAfter}
}

// Fields returns an Invalid error listing the fields at fault.
func Fields(message string, fields ...FieldError) *Error {
	return &Error{Code: Invalid, Message: message, Fields: fields}
}

// Wrap returns an error of the given code that keeps err as its cause.
func Wrap(code Code, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// CodeOf returns the code of the first *Error in err's chain, or Internal for
// any other non-nil error.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Is reports whether err carries the given code.
func Is(err error, code Code) bool { return err != nil && CodeOf(err) == code }

// As returns the first *Error in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
