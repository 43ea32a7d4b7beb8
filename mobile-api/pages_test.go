package mobileapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// getPage GETs path with the agent's token and decodes a 200 into out;
// it returns the status and body.
func getPage(t *testing.T, base, token, path string, out any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
	}
	return resp.StatusCode, string(body)
}

// pagedWorld is an agent serving two farmers, with orders and consent
// requests of theirs (some placed or requested at the same instant, so
// that pages break ties by id), of another agent's farmer, and closed or
// expired ones that are not listed. The other modules' rows are written
// as their owners store them: mobile-api reads them through their views.
type pagedWorld struct {
	tani     *apptest.Running
	agent    *clienttest.Agent
	token    string
	orders   []string // the agent's listed orders, newest placed first
	requests []string // the agent's open requests, oldest first
}

func mustPagedWorld(t *testing.T) *pagedWorld {
	t.Helper()
	ctx := context.Background()
	tani := apptest.MustStart(t, "-target=mobile-api")
	w := &pagedWorld{tani: tani, agent: clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")}
	w.token = accessToken(t, tani, w.agent)
	admin := client.NewAdmin(tani.URL, tani.OperatorToken)
	other := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	mine := []string{uuid.NewString(), uuid.NewString()}
	stranger := uuid.NewString()
	for _, f := range mine {
		if err := admin.Assign(ctx, f, w.agent.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.Assign(ctx, stranger, other.ID); err != nil {
		t.Fatal(err)
	}
	bank, err := admin.CreateOrganization(ctx, "Bank "+uuid.NewString()[:8], "bank")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	type order struct {
		farmer, status string
		placed         time.Duration // after base
		updatedAgo     time.Duration
		listed         bool
	}
	orders := []order{
		{mine[0], "placed", 0, 0, true},
		{mine[1], "accepted", time.Minute, 0, true},
		{mine[0], "shipped", time.Minute, 0, true}, // a tie on placing time
		{mine[1], "placed", time.Minute, 0, true},
		{mine[0], "delivered", 2 * time.Minute, time.Hour, true}, // closed recently: listed
		{mine[1], "placed", 3 * time.Minute, 0, true},
		{mine[0], "rejected", -time.Hour, 60 * 24 * time.Hour, false}, // closed long ago
		{stranger, "placed", 4 * time.Minute, 0, false},
	}
	type listed struct {
		id     string
		placed time.Time
	}
	var want []listed
	for _, o := range orders {
		id := uuid.NewString()
		if _, err := tani.DB.Exec(ctx, `
			INSERT INTO marketplace.orders (order_id, distributor_id, farmer_id, source, payment, currency, total, status, placed_at, updated_at)
			VALUES ($1, $2, $3, 'distributor', 'cash', 'IDR', 1000, $4, $5, now() - $6::interval)`,
			id, uuid.NewString(), o.farmer, o.status, base.Add(o.placed), o.updatedAgo); err != nil {
			t.Fatal(err)
		}
		if o.listed {
			want = append(want, listed{id, base.Add(o.placed)})
		}
	}
	slices.SortFunc(want, func(a, b listed) int {
		if c := b.placed.Compare(a.placed); c != 0 {
			return c
		}
		return strings.Compare(b.id, a.id)
	})
	for _, o := range want {
		w.orders = append(w.orders, o.id)
	}
	type request struct {
		farmer     string
		requested  time.Duration
		answerBy   time.Duration // from now
		listedOpen bool
	}
	var wantReqs []listed
	for _, r := range []request{
		{mine[0], 0, 24 * time.Hour, true},
		{mine[1], time.Minute, 24 * time.Hour, true},
		{mine[0], time.Minute, 24 * time.Hour, true}, // a tie on request time
		{mine[1], 2 * time.Minute, 24 * time.Hour, true},
		{mine[0], 3 * time.Minute, 24 * time.Hour, true},
		{mine[1], -time.Hour, -time.Minute, false}, // expired
		{stranger, time.Minute, 24 * time.Hour, false},
	} {
		id := uuid.NewString()
		if _, err := tani.DB.Exec(ctx, `
			INSERT INTO consent.requests (id, organization_id, farmer_id, scopes, duration_days, purpose, requested_by, request_id, requested_at, answer_by)
			VALUES ($1, $2, $3, '{plots}', 30, 'a loan', 'user:test', 'test', $4, now() + $5::interval)`,
			id, bank, r.farmer, base.Add(r.requested), r.answerBy); err != nil {
			t.Fatal(err)
		}
		if r.listedOpen {
			wantReqs = append(wantReqs, listed{id, base.Add(r.requested)})
		}
	}
	slices.SortFunc(wantReqs, func(a, b listed) int {
		if c := a.placed.Compare(b.placed); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	for _, r := range wantReqs {
		w.requests = append(w.requests, r.id)
	}
	return w
}

// page is the paging part of a list's answer, with the ids listed.
type page struct {
	Orders []struct {
		ID string `json:"order_id"`
	} `json:"orders"`
	Requests []struct {
		ID string `json:"id"`
	} `json:"consent_requests"`
	Cursor *string `json:"cursor"`
	More   bool    `json:"more"`
}

func (p page) ids() []string {
	var out []string
	for _, o := range p.Orders {
		out = append(out, o.ID)
	}
	for _, r := range p.Requests {
		out = append(out, r.ID)
	}
	return out
}

// walk reads every page of path at limit, calling between (if not nil)
// after the first page; it returns the ids in the order listed.
func (w *pagedWorld) walk(t *testing.T, path string, limit int, between func()) []string {
	t.Helper()
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("more than 20 pages: the cursor does not move")
		}
		q := "?limit=" + strconv.Itoa(limit)
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		var p page
		if code, body := getPage(t, w.tani.URL, w.token, path+q, &p); code != http.StatusOK {
			t.Fatalf("%s%s: %d %s", path, q, code, body)
		}
		if len(p.ids()) > limit {
			t.Fatalf("page of %d rows, limit %d", len(p.ids()), limit)
		}
		got = append(got, p.ids()...)
		if !p.More {
			if p.Cursor != nil {
				t.Errorf("last page has a cursor %q, want none", *p.Cursor)
			}
			return got
		}
		if p.Cursor == nil || *p.Cursor == "" {
			t.Fatalf("page with more has no cursor")
		}
		cursor = *p.Cursor
		if pages == 0 && between != nil {
			between()
		}
	}
}

// TestListPages: orders and consent requests page by cursor, every row
// exactly once in the documented order, whatever the page size and even
// when rows change while the phone pages; the phone client reads them.
func TestListPages(t *testing.T) {
	w := mustPagedWorld(t)
	ctx := context.Background()
	t.Run("OK_Orders", func(t *testing.T) {
		for _, limit := range []int{1, 2, 3, 9} {
			if got := w.walk(t, "/mobile/v1/orders", limit, nil); !slices.Equal(got, w.orders) {
				t.Errorf("limit %d: got %v, want %v", limit, got, w.orders)
			}
		}
		all, err := w.agent.Orders(ctx, "")
		if err != nil || len(all) != len(w.orders) {
			t.Errorf("client: %d orders (%v), want %d", len(all), err, len(w.orders))
		}
		var clientIDs []string
		cursor := ""
		for {
			p, err := w.agent.OrdersPage(ctx, "", cursor, 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range p.Orders {
				clientIDs = append(clientIDs, o.OrderID)
			}
			if !p.More {
				break
			}
			cursor = p.Cursor
		}
		if !slices.Equal(clientIDs, w.orders) {
			t.Errorf("client pages: got %v, want %v", clientIDs, w.orders)
		}
	})
	t.Run("OK_OrdersChangingWhilePaging", func(t *testing.T) {
		// The last order listed changes (its status, so its update time)
		// once the first page is read: it must still come, once.
		got := w.walk(t, "/mobile/v1/orders", 2, func() {
			if _, err := w.tani.DB.Exec(ctx, `UPDATE marketplace.orders SET status = 'accepted', updated_at = now() WHERE order_id = $1`, w.orders[len(w.orders)-1]); err != nil {
				t.Fatal(err)
			}
		})
		if !slices.Equal(got, w.orders) {
			t.Errorf("got %v, want %v", got, w.orders)
		}
	})
	t.Run("OK_ConsentRequests", func(t *testing.T) {
		for _, limit := range []int{1, 2, 4, 9} {
			if got := w.walk(t, "/mobile/v1/consent-requests", limit, nil); !slices.Equal(got, w.requests) {
				t.Errorf("limit %d: got %v, want %v", limit, got, w.requests)
			}
		}
		all, err := w.agent.ConsentRequests(ctx)
		var ids []string
		for _, r := range all {
			ids = append(ids, r.ID)
		}
		if err != nil || !slices.Equal(ids, w.requests) {
			t.Errorf("client: %v (%v), want %v", ids, err, w.requests)
		}
		p, err := w.agent.ConsentRequestsPage(ctx, "", 2)
		if err != nil || len(p.Requests) != 2 || !p.More || p.Cursor == "" {
			t.Fatalf("client first page: %+v %v, want 2 requests and more", p, err)
		}
		p, err = w.agent.ConsentRequestsPage(ctx, p.Cursor, 2)
		if err != nil || len(p.Requests) != 2 || p.Requests[0].ID != w.requests[2] {
			t.Errorf("client second page: %+v %v, want requests 3 and 4", p, err)
		}
	})
	t.Run("ErrBadQuery", func(t *testing.T) {
		for _, path := range []string{"/mobile/v1/orders", "/mobile/v1/consent-requests"} {
			for q, field := range map[string]string{
				"?limit=0": "limit", "?limit=501": "limit", "?limit=ten": "limit",
				"?cursor=bm90LWEtY3Vyc29y": "cursor", "?cursor=!!": "cursor",
			} {
				code, body := getPage(t, w.tani.URL, w.token, path+q, nil)
				if code != http.StatusBadRequest || !strings.Contains(body, `"field":"`+field+`"`) {
					t.Errorf("%s%s: got %d %s, want 400 naming %s", path, q, code, body, field)
				}
			}
		}
		code, body := getPage(t, w.tani.URL, w.token, "/mobile/v1/orders?farmer_id=Siti&limit=0", nil)
		if code != http.StatusBadRequest || !strings.Contains(body, `"field":"farmer_id"`) || !strings.Contains(body, `"field":"limit"`) {
			t.Errorf("two bad fields: got %d %s, want 400 naming both", code, body)
		}
		var typed *client.Error
		_, err := w.agent.OrdersPage(ctx, "", "garbage", 0)
		if !errors.As(err, &typed) || typed.Status != http.StatusBadRequest {
			t.Errorf("client with a bad cursor: %v, want a 400", err)
		}
	})
}
