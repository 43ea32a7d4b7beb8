package marketplace_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/services/webhooks"
)

// hookReceiver is the distributor's HTTPS endpoint: it verifies every
// request with the secret the test read off the portal's page and keeps
// the ids of the events it verified.
type hookReceiver struct {
	srv      *httptest.Server
	mu       sync.Mutex
	secret   string
	verified map[string]bool
	refused  []string
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{verified: map[string]bool{}}
	rc.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		wh, err := standardwebhooks.NewWebhook(rc.secret)
		if err == nil {
			err = wh.Verify(body, r.Header)
		}
		if err != nil {
			rc.refused = append(rc.refused, r.Header.Get("webhook-id")+": "+err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		rc.verified[r.Header.Get("webhook-id")] = true
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// caFile writes the receiver's certificate where -webhooks.extra-ca-file
// reads it.
func (rc *hookReceiver) caFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "receiver-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (rc *hookReceiver) trust(secret string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secret = secret
}

func (rc *hookReceiver) got(id string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.verified[id]
}

// orderPlaced records an event addressed to the distributor, as the
// marketplace does when an order arrives.
func orderPlaced(t *testing.T, tani *apptest.Running, org string) string {
	t.Helper()
	ev := events.Event{ID: uuid.NewString(), Type: events.OrderPlaced, OrganizationID: org, OccurredAt: time.Now(),
		Data: map[string]any{"order_id": uuid.NewString()}}
	ctx := context.Background()
	if err := pgx.BeginFunc(ctx, tani.DB, func(tx pgx.Tx) error { return events.Record(ctx, tx, ev) }); err != nil {
		t.Fatal(err)
	}
	return ev.ID
}

// waitDelivered reloads the endpoint's page until the event's delivery
// shows as delivered, and checks the receiver verified it.
func waitDelivered(t *testing.T, ctx context.Context, page string, rc *hookReceiver, event string) {
	t.Helper()
	row := fmt.Sprintf(`tr[data-event="%s"] .s-delivered`, event)
	polltest.Eventually(t, 20*time.Second, func() error {
		if _, err := try(ctx, chromedp.Navigate(page)); err != nil {
			return err
		}
		return showing(ctx, row)
	})
	if !rc.got(event) {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		t.Fatalf("event %s shown delivered, but the receiver did not verify it (refused: %v)", event, rc.refused)
	}
}

// TestBrowser_Webhooks is a distributor's administrator wiring the
// organization's ERP to Tani in the portal: add an HTTPS endpoint (its
// description carrying markup, shown as text), copy the secret shown
// once, see an event's delivery arrive with its attempt, rotate the
// secret and see the next delivery verify with the new one. A form posted
// without the session's CSRF token is refused.
func TestBrowser_Webhooks(t *testing.T) {
	rc := newHookReceiver(t)
	tani := apptest.MustStart(t, "-webhooks.development", "-webhooks.extra-ca-file="+rc.caFile(t),
		"-webhooks.poll-interval=100ms", "-events.relay-interval=50ms")
	d := mustDistributor(t, tani)
	ctx := mustBrowser(t)
	shots := artifacts(t)
	base := tani.URL + "/portal"

	run(t, ctx, "sign in",
		chromedp.Navigate(base+"/webhooks"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), d.username),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), d.password),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)),
		chromedp.WaitVisible(chromedp.CSS(`#add-webhook`)),
	)
	screenshot(t, ctx, shots, "1-webhooks-empty")

	hookURL := rc.srv.URL + "/tani/hooks"
	desc := `<script>alert("x")</script> ERP & "orders"`
	run(t, ctx, "add an endpoint",
		chromedp.SetValue(chromedp.CSS(`#add-webhook input[name=url]`), hookURL),
		chromedp.SetValue(chromedp.CSS(`#add-webhook input[name=description]`), desc),
		chromedp.Click(chromedp.CSS(`#add-webhook input[value="order.placed"]`)),
		chromedp.Submit(chromedp.CSS(`#add-webhook input[name=url]`)),
		chromedp.WaitVisible(chromedp.CSS(`#webhook-secret`)),
	)
	secret := get(t, ctx, "read the secret", chromedp.Text(chromedp.CSS(`#webhook-secret`)))
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret shown %q, want whsec_…", secret)
	}
	rc.trust(secret)
	screenshot(t, ctx, shots, "2-secret-once")

	run(t, ctx, "to the endpoint", chromedp.Click(chromedp.CSS(`#to-endpoint`)), chromedp.WaitVisible(chromedp.CSS(`#webhook-deliveries`)))
	endpointPage := get(t, ctx, "endpoint page URL", chromedp.Location())
	body := get(t, ctx, "page text", chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	shown := get(t, ctx, "description", chromedp.Text(chromedp.CSS(`#webhook-desc`)))
	if strings.Contains(body, secret) || shown != desc || count(t, ctx, "script") != 0 {
		t.Errorf("endpoint page: secret shown again %v, description %q (want %q as text), %d script elements",
			strings.Contains(body, secret), shown, desc, count(t, ctx, "script"))
	}

	first := orderPlaced(t, tani, d.org)
	waitDelivered(t, ctx, endpointPage, rc, first)
	if got := get(t, ctx, "attempt", chromedp.Text(chromedp.CSS(fmt.Sprintf(`tr[data-event="%s"] td:nth-child(7)`, first)))); !strings.Contains(got, "#1") || !strings.Contains(got, "HTTP 204") {
		t.Errorf("attempt log %q, want #1 … HTTP 204", got)
	}
	screenshot(t, ctx, shots, "3-delivery-arrived")

	t.Run("ErrFormWithoutCSRF", func(t *testing.T) {
		cookies := get(t, ctx, "cookies", chromedp.Action[[]*network.Cookie](func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
			res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
			return res.Cookies, err
		}))
		req, _ := http.NewRequest("POST", endpointPage+"/delete", strings.NewReader(""))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, c := range cookies {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("form without CSRF token answered %d, want 403", resp.StatusCode)
		}
		var list struct{ Webhooks []webhooks.Endpoint }
		if code := d.call(t, tani, "GET", "/distributor/v1/webhooks", nil, &list); code != 200 || len(list.Webhooks) != 1 {
			t.Errorf("after a refused delete: %d, %d endpoints, want 1", code, len(list.Webhooks))
		}
	})

	run(t, ctx, "rotate", chromedp.Navigate(endpointPage), chromedp.WaitVisible(chromedp.CSS(`#rotate`)),
		chromedp.Click(chromedp.CSS(`button[name=rotate]`)), chromedp.WaitVisible(chromedp.CSS(`#webhook-secret`)))
	rotated := get(t, ctx, "read the new secret", chromedp.Text(chromedp.CSS(`#webhook-secret`)))
	if rotated == secret || !strings.HasPrefix(rotated, "whsec_") {
		t.Fatalf("rotated secret %q (the first %q)", rotated, secret)
	}
	screenshot(t, ctx, shots, "4-rotated")
	rc.trust(rotated) // the receiver switches at once: the new signature must be there
	second := orderPlaced(t, tani, d.org)
	waitDelivered(t, ctx, endpointPage, rc, second)
	screenshot(t, ctx, shots, "5-delivered-with-new-secret")

	run(t, ctx, "list", chromedp.Navigate(base+"/webhooks"), chromedp.WaitVisible(chromedp.CSS(`#webhooks`)))
	if health := get(t, ctx, "health", chromedp.Text(chromedp.CSS(`#webhooks .status`))); health != "healthy" {
		t.Errorf("health %q, want healthy", health)
	}
	for _, page := range []string{endpointPage, base + "/webhooks"} {
		// The body as served (the navigation's decoded body size) and
		// everything the page loaded besides (the shared stylesheet).
		run(t, ctx, "open "+page, chromedp.Navigate(page))
		size := get(t, ctx, "page size", chromedp.Evaluate[int](`performance.getEntriesByType('navigation')[0].decodedBodySize +
			performance.getEntriesByType('resource').reduce((n, r) => n + r.decodedBodySize, 0)`))
		if size > 150<<10 {
			t.Errorf("%s weighs %d bytes, want at most 150 KB", page, size)
		}
		t.Logf("%s: %d bytes with its stylesheet", page, size)
	}
	screenshot(t, ctx, shots, "6-webhooks-list")
}
