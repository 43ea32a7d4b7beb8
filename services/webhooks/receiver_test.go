package webhooks_test

import (
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tani-platform/tani/internal/polltest"
)

// received is one request a receiver got.
type received struct {
	header http.Header
	body   []byte
	at     time.Time
	status int
}

// receiver is an organization's webhook endpoint: it records every
// request, answers as answer says (nil: 204), and checks signatures with
// the Standard Webhooks reference library against the secrets it holds.
type receiver struct {
	srv    *httptest.Server
	answer func(r *http.Request, n int64) int

	mu      sync.Mutex
	byID    map[string][]received
	total   int64
	secrets []string
	bad     []string // verification failures, described
	conns   atomic.Int64
}

func newReceiver(t testing.TB, tls bool, answer func(r *http.Request, n int64) int) *receiver {
	t.Helper()
	rc := &receiver{answer: answer, byID: map[string][]received{}}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	rc.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			rc.conns.Add(1)
		}
	}
	if tls {
		rc.srv.StartTLS()
	} else {
		rc.srv.Start()
	}
	t.Cleanup(rc.srv.Close)
	return rc
}

// roots trusts the receiver's TLS certificate.
func (rc *receiver) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(rc.srv.Certificate())
	return p
}

// trust sets the secrets deliveries must verify with (any one of them).
func (rc *receiver) trust(secrets ...string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secrets = secrets
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.total++
	n := rc.total
	secrets := rc.secrets
	rc.mu.Unlock()
	status := http.StatusNoContent
	if rc.answer != nil {
		if s := rc.answer(r, n); s != 0 {
			status = s
		}
	}
	var bad []string
	if len(secrets) > 0 {
		ok := false
		var errs []error
		for _, s := range secrets {
			wh, err := standardwebhooks.NewWebhook(s)
			if err != nil {
				bad = append(bad, fmt.Sprintf("secret %q: %v", s, err))
				continue
			}
			if err := wh.Verify(body, r.Header); err == nil {
				ok = true
			} else {
				errs = append(errs, err)
			}
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("request %d (%s): no secret verifies: %v", n, r.Header.Get("webhook-id"), errs))
		}
	}
	rc.mu.Lock()
	id := r.Header.Get("webhook-id")
	rc.byID[id] = append(rc.byID[id], received{header: r.Header.Clone(), body: body, at: time.Now(), status: status})
	rc.bad = append(rc.bad, bad...)
	rc.mu.Unlock()
	w.WriteHeader(status)
}

// delivered returns the requests answered 2xx, per webhook-id.
func (rc *receiver) delivered() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string]int{}
	for id, rs := range rc.byID {
		for _, r := range rs {
			if r.status/100 == 2 {
				out[id]++
			}
		}
	}
	return out
}

func (rc *receiver) requests(id string) []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.byID[id]...)
}

func (rc *receiver) count() int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.total
}

func (rc *receiver) failures() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.bad...)
}

// waitDelivered waits until every id was answered 2xx at least once.
func (rc *receiver) waitDelivered(t testing.TB, timeout time.Duration, ids ...string) {
	t.Helper()
	polltest.Eventually(t, timeout, func() error {
		got := rc.delivered()
		missing := 0
		for _, id := range ids {
			if got[id] == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d events not delivered (%d requests so far)", missing, len(ids), rc.count())
		}
		return nil
	})
}
