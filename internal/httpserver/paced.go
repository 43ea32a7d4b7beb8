package httpserver

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// pacedBody is a request body read under a moving deadline on the
// connection: before each read, the deadline is the earlier of
//
//   - now + timeout: no wait for data is longer than timeout, and
//   - start + timeout + received/minRate: after the grace of one timeout,
//     the body must keep up an average of minRate bytes a second.
//
// A client that sends a byte and stalls is cut off after timeout; one
// that trickles bytes is cut off once its average falls below minRate; a
// slow but steady phone (a 5 MB sync, a media chunk over 2G) is not. The
// first deadline is set at once, so a handler that never reads the body
// does not leave the server's own discard of it unbounded. tus uploads
// (mobile-api/media) read through it too: tusd's own per-read deadline is
// set after each read and replaced by this one before the next.
type pacedBody struct {
	body    io.ReadCloser
	w       http.ResponseWriter
	rc      *http.ResponseController
	start   time.Time
	timeout time.Duration
	minRate int64
	n       int64
	done    bool // EOF: the server reads the connection itself now
}

func newPacedBody(w http.ResponseWriter, body io.ReadCloser, timeout time.Duration, minRate int) *pacedBody {
	b := &pacedBody{body: body, w: w, rc: http.NewResponseController(w), start: time.Now(), timeout: timeout, minRate: int64(minRate)}
	b.setDeadline(b.start)
	return b
}

func (b *pacedBody) setDeadline(now time.Time) {
	d := now.Add(b.timeout)
	if b.minRate > 0 {
		earned := time.Duration(float64(b.n) / float64(b.minRate) * float64(time.Second))
		if paced := b.start.Add(b.timeout + earned); paced.Before(d) {
			d = paced
		}
	}
	// Only unsupported on connections that have no deadlines (tests'
	// recorders); there is nothing to pace then.
	_ = b.rc.SetReadDeadline(d)
}

// Read reads under the deadline. Once the body hits EOF the deadline is
// left alone: net/http then watches the connection for the client going
// away, and a deadline set under it would cancel the request.
func (b *pacedBody) Read(p []byte) (int, error) {
	if b.done {
		return b.body.Read(p)
	}
	b.setDeadline(time.Now())
	n, err := b.body.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		b.done = true
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The connection cannot carry another request after a body
		// cut short: close it after the answer rather than wait for the
		// next request's header timeout. (Set from the goroutine reading
		// the body, which is the handler's: handlers read bodies and
		// write answers from one goroutine.)
		b.w.Header().Set("Connection", "close")
		return n, &BodyTimeoutError{Received: b.n, Elapsed: time.Since(b.start), cause: err}
	}
	return n, err
}

func (b *pacedBody) Close() error { return b.body.Close() }

// BodyTimeoutError is a request body that did not arrive in time (see
// Config); the error handler answers it 408.
type BodyTimeoutError struct {
	Received int64
	Elapsed  time.Duration
	cause    error
}

func (e *BodyTimeoutError) Error() string {
	return fmt.Sprintf("request body arrived too slowly (%d bytes in %s): %v", e.Received, e.Elapsed.Round(time.Millisecond), e.cause)
}

// Unwrap keeps os.ErrDeadlineExceeded visible.
func (e *BodyTimeoutError) Unwrap() error { return e.cause }

// Timeout makes it a net.Error timeout, as the read deadline's own error
// is: tusd answers those with its ERR_READ_TIMEOUT, and a tus client
// resumes from the offset the server kept.
func (e *BodyTimeoutError) Timeout() bool { return true }

// Temporary is part of net.Error.
func (e *BodyTimeoutError) Temporary() bool { return true }
