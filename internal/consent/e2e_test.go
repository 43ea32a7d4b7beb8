package consent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger/verify"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

var loc = client.Location{Lat: -7.25, Lon: 110.4, AccuracyM: 4}

// world is a running Tani with a bank, a distributor, an agent and a
// registered farmer with a mapped plot.
type world struct {
	tani                  *apptest.Running
	agent                 *clienttest.Agent
	farmer                string
	registration, plotRec string // record ids
	bank, otherBank, dist org
}

// org is a bank or distributor with an API key.
type org struct {
	id, kind, name, key string
}

func (o org) api() string { return "/" + o.kind + "/v1" }

// call is one HTTP request to the process.
func call(t *testing.T, tani *apptest.Running, method, path, bearer string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, tani.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func mustJSON(t *testing.T, code int, body []byte, want int, v any) {
	t.Helper()
	if code != want {
		t.Fatalf("got %d %s, want %d", code, body, want)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
	}
}

// mustOrg creates an organization with an API key (every scope).
func mustOrg(t *testing.T, tani *apptest.Running, kind string) org {
	t.Helper()
	o := org{kind: kind, name: kind + " " + uuid.NewString()[:8]}
	var created struct{ ID string }
	code, body := call(t, tani, "POST", "/admin/v1/organizations", tani.OperatorToken, map[string]string{"name": o.name, "kind": kind})
	mustJSON(t, code, body, http.StatusCreated, &created)
	o.id = created.ID
	var key struct{ Token string }
	code, body = call(t, tani, "POST", "/admin/v1/organizations/"+o.id+"/api-keys", tani.OperatorToken, map[string]string{"name": "scoring"})
	mustJSON(t, code, body, http.StatusCreated, &key)
	o.key = key.Token
	return o
}

func mustSync(t *testing.T, a *clienttest.Agent, raw json.RawMessage) string {
	t.Helper()
	res, err := a.Sync(context.Background(), []json.RawMessage{raw})
	if err != nil || len(res) != 1 || res[0].Status != "accepted" {
		t.Fatalf("sync: %v %+v, want accepted", err, res)
	}
	return res[0].ID
}

// waitStatus waits until a record reaches one of the statuses.
func waitStatus(t *testing.T, a *clienttest.Agent, id string, want ...string) {
	t.Helper()
	polltest.Eventually(t, 30*time.Second, func() error {
		st, err := a.Status(context.Background(), id)
		if err != nil {
			return err
		}
		if !slices.Contains(want, st.Status) {
			return fmt.Errorf("record %s is %s, want %v", id, st.Status, want)
		}
		return nil
	})
}

func mustWorld(t *testing.T, args ...string) *world {
	t.Helper()
	tani := apptest.MustStart(t, append([]string{"-log.level=info", "-consent.sweep-interval=100ms", "-ledger.checkpoint-interval=100ms",
		"-attest.sweep-interval=100ms", "-anchor.interval=100ms"}, args...)...)
	w := &world{tani: tani, agent: clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java"), farmer: uuid.NewString()}
	p := clienttest.Payloads(w.farmer, uuid.NewString(), time.Now())
	raw, id, err := w.agent.Record(record.TypeFarmerRegistered, time.Now().Add(-time.Hour), loc, p["farmer.registered"])
	if err != nil {
		t.Fatal(err)
	}
	w.registration = mustSync(t, w.agent, raw)
	raw, w.plotRec, err = w.agent.Record(record.TypePlotMapped, time.Now().Add(-time.Hour), loc, p["plot.mapped"])
	if err != nil {
		t.Fatal(err)
	}
	mustSync(t, w.agent, raw)
	waitStatus(t, w.agent, id, "verified")
	waitStatus(t, w.agent, w.plotRec, "verified", "flagged")
	w.bank, w.otherBank, w.dist = mustOrg(t, tani, "bank"), mustOrg(t, tani, "bank"), mustOrg(t, tani, "distributor")
	return w
}

// otp asks for a consent code and reads it from the development SMS
// sender's log line (the database holds only its hash).
func (w *world) otp(t *testing.T) (challenge, code string) {
	t.Helper()
	before := len(w.smsLines(`your consent code is \d{6}`))
	challenge, err := w.agent.RequestOTP(context.Background(), w.farmer)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	polltest.Eventually(t, 10*time.Second, func() error {
		if lines = w.smsLines(`your consent code is \d{6}`); len(lines) <= before {
			return errors.New("no new SMS yet")
		}
		return nil
	})
	return challenge, regexp.MustCompile(`your consent code is (\d{6})`).FindStringSubmatch(lines[len(lines)-1])[1]
}

// smsLines are the development SMS sender's log lines matching pattern.
func (w *world) smsLines(pattern string) []string {
	re := regexp.MustCompile(pattern)
	var out []string
	for _, l := range w.tani.Logs() {
		if strings.Contains(l, "development sender") && re.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// grant is the farmer's signed answer to a request.
func (w *world) grant(t *testing.T, consentID, grantee string, scopes []string, days int) json.RawMessage {
	t.Helper()
	challenge, code := w.otp(t)
	raw, _, err := w.agent.Record(record.TypeConsentGranted, time.Now(), loc, map[string]any{
		"farmer_id": w.farmer, "consent_id": consentID, "grantee_organization_id": grantee, "scopes": scopes,
		"expires_at":       time.Now().Add(time.Duration(days) * 24 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339),
		"otp_challenge_id": challenge, "otp_code": code,
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (w *world) consent(t *testing.T, o org, id string) consent.Consent {
	t.Helper()
	var c consent.Consent
	code, body := call(t, w.tani, "GET", o.api()+"/consents/"+id, o.key, nil)
	mustJSON(t, code, body, http.StatusOK, &c)
	return c
}

func (w *world) waitConsent(t *testing.T, o org, id string, ok func(consent.Consent) error) consent.Consent {
	t.Helper()
	var c consent.Consent
	polltest.Eventually(t, 30*time.Second, func() error {
		c = w.consent(t, o, id)
		return ok(c)
	})
	return c
}

func (w *world) request(t *testing.T, o org, scopes []string, days int) consent.Consent {
	t.Helper()
	var c consent.Consent
	code, body := call(t, w.tani, "POST", o.api()+"/consent-requests", o.key,
		map[string]any{"farmer_id": w.farmer, "scopes": scopes, "duration_days": days, "purpose": "working-capital loan for the dry season"})
	mustJSON(t, code, body, http.StatusCreated, &c)
	return c
}

// history reads a record's journal history as o (200 or a refusal).
func (w *world) history(t *testing.T, o org, recordID string) int {
	t.Helper()
	code, _ := call(t, w.tani, "GET", "/ledger/v1/records/"+recordID+"/history", o.key, nil)
	return code
}

func (w *world) accessLogCount(t *testing.T, allowed bool, orgID string) int {
	t.Helper()
	var n int
	if err := w.tani.DB.QueryRow(context.Background(), `SELECT count(*) FROM consent.access_log WHERE farmer_id = $1 AND allowed = $2 AND organization_id = $3`,
		w.farmer, allowed, orgID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestConsentLifecycle follows a bank's consent request from the bank to
// the agent's phone, the farmer's one-time code and signed grant, the
// gated reads it allows (logged, shown to the farmer, texted), to its
// revocation; and a distributor's request the farmer refuses.
func TestConsentLifecycle(t *testing.T) {
	w := mustWorld(t, "-mobile.access-digest-interval=100ms")
	ctx := context.Background()
	bank, dist := w.bank, w.dist

	req := w.request(t, bank, []string{"plots", "harvests"}, 90)
	if req.Status != consent.StatusAwaiting || req.Request == nil || req.Request.DurationDays != 90 || req.FarmerID != w.farmer || req.OrganizationID != bank.id {
		t.Fatalf("got %+v, want an awaiting request of the bank", req)
	}
	t.Run("RequestJournaled", func(t *testing.T) {
		c := w.waitConsent(t, bank, req.ID, func(c consent.Consent) error {
			if len(c.Journal) != 1 || !c.Journal[0].Journaled || c.Journal[0].Event != "requested" {
				return fmt.Errorf("journal %+v, want the request journaled", c.Journal)
			}
			return nil
		})
		code, body := call(t, w.tani, "GET", c.Journal[0].ReceiptURL, "", nil)
		if _, err := verify.VerifyReceipt(body, w.tani.App.Journal().VerifierKey()); code != 200 || err != nil {
			t.Errorf("receipt of the request: %d %v", code, err)
		}
	})
	t.Run("ErrSecondOpenRequest", func(t *testing.T) {
		code, body := call(t, w.tani, "POST", bank.api()+"/consent-requests", bank.key,
			map[string]any{"farmer_id": w.farmer, "scopes": []string{"credit"}, "duration_days": 30, "purpose": "again"})
		if code != http.StatusConflict || !strings.Contains(string(body), req.ID) {
			t.Errorf("got %d %s, want 409 naming the open request", code, body)
		}
	})
	t.Run("OnTheAgentsPhone", func(t *testing.T) {
		reqs, err := w.agent.ConsentRequests(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(reqs) != 1 || reqs[0].ID != req.ID || reqs[0].OrganizationName != bank.name || reqs[0].DurationDays != 90 ||
			!slices.Equal(reqs[0].Scopes, []string{"harvests", "plots"}) || reqs[0].Purpose == "" {
			t.Errorf("got %+v, want the bank's request", reqs)
		}
		other := clienttest.MustAgent(t, w.tani.URL, w.tani.OperatorToken, "Bali")
		if reqs, err := other.ConsentRequests(ctx); err != nil || len(reqs) != 0 {
			t.Errorf("another agent sees %+v (%v), want none", reqs, err)
		}
	})
	t.Run("ErrNoReadBeforeConsent", func(t *testing.T) {
		if code := w.history(t, bank, w.plotRec); code != http.StatusForbidden {
			t.Errorf("got %d, want 403", code)
		}
	})
	t.Run("ErrAnswerBeyondTheRequest", func(t *testing.T) {
		for name, tc := range map[string]struct {
			raw   json.RawMessage
			field string
		}{
			"MoreScopes":   {w.grant(t, req.ID, bank.id, []string{"plots", "harvests", "identity"}, 30), "records[0].payload.scopes"},
			"Longer":       {w.grant(t, req.ID, bank.id, []string{"plots"}, 91), "records[0].payload.expires_at"},
			"OtherGrantee": {w.grant(t, req.ID, w.otherBank.id, []string{"plots"}, 30), "records[0].payload.grantee_organization_id"},
			"Over180Days":  {w.grant(t, uuid.NewString(), bank.id, []string{"plots"}, 181), "records[0].payload.expires_at"},
		} {
			_, err := w.agent.Sync(ctx, []json.RawMessage{tc.raw})
			var apiErr *client.Error
			if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || !strings.Contains(apiErr.Error(), tc.field) {
				t.Errorf("%s: got %v, want 400 naming %s", name, err, tc.field)
			}
		}
	})

	grantRaw := w.grant(t, req.ID, bank.id, []string{"plots", "harvests"}, 90)
	grantID := mustSync(t, w.agent, grantRaw)
	c := w.waitConsent(t, bank, req.ID, func(c consent.Consent) error {
		if c.Status != consent.StatusAuthorised || c.Receipt == nil {
			return fmt.Errorf("status %s, receipt %v: want authorised with the grant's receipt", c.Status, c.Receipt != nil)
		}
		return nil
	})
	t.Run("Authorised", func(t *testing.T) {
		if c.GrantedRecordID == nil || *c.GrantedRecordID != grantID || c.ExpiresAt == nil || time.Until(*c.ExpiresAt) < 89*24*time.Hour {
			t.Errorf("got %+v, want granted by record %s for 90 days", c, grantID)
		}
		receipt, _ := json.Marshal(c.Receipt)
		entry, err := verify.VerifyReceipt(receipt, w.tani.App.Journal().VerifierKey())
		if err != nil || entry.Entry.RecordID != grantID {
			t.Errorf("the receipt does not prove the grant: %v (%+v)", err, entry)
		}
		if reqs, _ := w.agent.ConsentRequests(ctx); len(reqs) != 0 {
			t.Errorf("answered request still on the phone: %+v", reqs)
		}
	})

	t.Run("GatedReads", func(t *testing.T) {
		if code := w.history(t, bank, w.plotRec); code != http.StatusOK {
			t.Fatalf("bank reads the plot's history: got %d, want 200", code)
		}
		var granted string
		if err := w.tani.DB.QueryRow(ctx, `SELECT granted_record_id::text FROM consent.access_log WHERE farmer_id = $1 AND allowed ORDER BY id DESC LIMIT 1`, w.farmer).Scan(&granted); err != nil || granted != grantID {
			t.Errorf("access log names grant %q (%v), want %s", granted, err, grantID)
		}
		for name, tc := range map[string]struct {
			o      org
			record string
		}{
			"WrongScope":       {bank, w.registration}, // identity was not granted
			"OtherBank":        {w.otherBank, w.plotRec},
			"Distributor":      {dist, w.plotRec},
			"UnknownRecord":    {bank, uuid.NewString()},
			"ConsentIsNotData": {bank, grantID},
		} {
			before := w.accessLogCount(t, true, tc.o.id)
			if code := w.history(t, tc.o, tc.record); code != http.StatusForbidden {
				t.Errorf("%s: got %d, want 403", name, code)
			}
			if after := w.accessLogCount(t, true, tc.o.id); after != before {
				t.Errorf("%s: allowed rows %d → %d, want none added", name, before, after)
			}
		}
		if n := w.accessLogCount(t, false, dist.id); n != 1 {
			t.Errorf("distributor's denied rows: %d, want 1", n)
		}
	})
	t.Run("FarmerSeesWhoLooked", func(t *testing.T) {
		log, err := w.agent.AccessLog(ctx, w.farmer)
		if err != nil {
			t.Fatal(err)
		}
		if len(log) == 0 || !log[len(log)-1].Allowed && log[0].OrganizationName == "" {
			t.Fatalf("got %+v", log)
		}
		var sawBank bool
		for _, a := range log {
			sawBank = sawBank || a.Allowed && a.OrganizationName == bank.name && slices.Equal(a.Scopes, []string{"plots"})
		}
		if !sawBank {
			t.Errorf("got %+v, want the bank's read of plots", log)
		}
		other := clienttest.MustAgent(t, w.tani.URL, w.tani.OperatorToken, "Bali")
		var apiErr *client.Error
		if _, err := other.AccessLog(ctx, w.farmer); !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden {
			t.Errorf("unassigned agent: got %v, want 403", err)
		}
	})
	t.Run("DigestTextedOnce", func(t *testing.T) {
		digest := `looked at your farm data`
		polltest.Eventually(t, 30*time.Second, func() error {
			if n := len(w.smsLines(digest)); n != 1 {
				return fmt.Errorf("%d digests, want 1", n)
			}
			return nil
		})
		if l := w.smsLines(digest)[0]; !strings.Contains(l, bank.name) || !strings.Contains(l, "once") {
			t.Errorf("digest %q, want the bank's one read", l)
		}
		// Another read: the next digest tells of it alone.
		if code := w.history(t, bank, w.plotRec); code != http.StatusOK {
			t.Fatal(code)
		}
		polltest.Eventually(t, 30*time.Second, func() error {
			if n := len(w.smsLines(digest)); n != 2 {
				return fmt.Errorf("%d digests, want 2", n)
			}
			return nil
		})
		if l := w.smsLines(digest)[1]; !strings.Contains(l, "once") {
			t.Errorf("second digest %q, want only the new read", l)
		}
		// The text goes out before its transaction commits.
		polltest.Eventually(t, 10*time.Second, func() error {
			var accesses int64
			w.tani.DB.QueryRow(ctx, `SELECT accesses FROM mobile.access_digests WHERE farmer_id = $1`, w.farmer).Scan(&accesses)
			if accesses != 2 {
				return fmt.Errorf("told about %d accesses, want 2", accesses)
			}
			return nil
		})
	})
	t.Run("OperatorsAccessLog", func(t *testing.T) {
		var out struct{ Entries []consent.AccessEntry }
		code, body := call(t, w.tani, "GET", "/admin/v1/access-log?farmer_id="+w.farmer+"&organization_id="+bank.id, w.tani.OperatorToken, nil)
		mustJSON(t, code, body, http.StatusOK, &out)
		if len(out.Entries) < 2 || out.Entries[0].OrganizationID != bank.id || out.Entries[0].ReceiptURL != consent.ReceiptURL(grantID, 1) {
			t.Errorf("got %+v", out.Entries)
		}
		reviewer, _ := w.tani.MustOperatorUser(t, "reviewer")
		if code, _ := call(t, w.tani, "GET", "/admin/v1/access-log", reviewer, nil); code != http.StatusForbidden {
			t.Errorf("reviewer: got %d, want 403", code)
		}
		if code, body := call(t, w.tani, "GET", "/admin/v1/access-log?farmer_id=NOPE", w.tani.OperatorToken, nil); code != 400 || !strings.Contains(string(body), "farmer_id") {
			t.Errorf("bad filter: got %d %s", code, body)
		}
	})

	t.Run("RevokedOnTheNextRead", func(t *testing.T) {
		raw, revID, err := w.agent.Record(record.TypeConsentRevoked, time.Now(), loc, map[string]any{"farmer_id": w.farmer, "consent_id": req.ID, "reason": "repaid"})
		if err != nil {
			t.Fatal(err)
		}
		mustSync(t, w.agent, raw)
		waitStatus(t, w.agent, revID, "ingested", "verified")
		if code := w.history(t, bank, w.plotRec); code != http.StatusForbidden {
			t.Errorf("read after revocation: got %d, want 403", code)
		}
		c := w.waitConsent(t, bank, req.ID, func(c consent.Consent) error {
			if c.Status != consent.StatusRevoked {
				return fmt.Errorf("status %s", c.Status)
			}
			for _, e := range c.Journal {
				if e.Event == "revoked" && e.Journaled {
					return nil
				}
			}
			return fmt.Errorf("journal %+v, want the revocation journaled", c.Journal)
		})
		if c.RevokeReason == nil || *c.RevokeReason != "repaid" {
			t.Errorf("got %+v", c)
		}
	})

	t.Run("Refused", func(t *testing.T) {
		r := w.request(t, dist, []string{"orders"}, 30)
		raw, refID, err := w.agent.Record(record.TypeConsentRefused, time.Now(), loc, map[string]any{
			"farmer_id": w.farmer, "consent_id": r.ID, "grantee_organization_id": dist.id, "reason": "does not buy from them"})
		if err != nil {
			t.Fatal(err)
		}
		mustSync(t, w.agent, raw)
		c := w.waitConsent(t, dist, r.ID, func(c consent.Consent) error {
			if c.Status != consent.StatusRejected {
				return fmt.Errorf("status %s", c.Status)
			}
			return nil
		})
		if c.RejectReason == nil || c.GrantedRecordID != nil || c.Receipt != nil {
			t.Errorf("got %+v", c)
		}
		waitStatus(t, w.agent, refID, "verified")
		// A refusal answers a request: one of nothing is refused.
		raw, _, _ = w.agent.Record(record.TypeConsentRefused, time.Now(), loc, map[string]any{
			"farmer_id": w.farmer, "consent_id": uuid.NewString(), "grantee_organization_id": dist.id})
		_, err = w.agent.Sync(ctx, []json.RawMessage{raw})
		var apiErr *client.Error
		if !errors.As(err, &apiErr) || apiErr.Status != 400 || !strings.Contains(apiErr.Error(), "payload.consent_id") {
			t.Errorf("refusal of no request: got %v, want 400 naming payload.consent_id", err)
		}
	})

	t.Run("ExpiryJournaled", func(t *testing.T) {
		r := w.request(t, w.otherBank, []string{"sales"}, 10)
		if _, err := w.tani.DB.Exec(ctx, `UPDATE consent.requests SET answer_by = requested_at + interval '1 millisecond' WHERE id = $1`, r.ID); err != nil {
			t.Fatal(err)
		}
		w.waitConsent(t, w.otherBank, r.ID, func(c consent.Consent) error {
			if c.Status != consent.StatusExpired || len(c.Journal) != 2 || c.Journal[1].Event != "request_expired" || !c.Journal[1].Journaled {
				return fmt.Errorf("status %s, journal %+v", c.Status, c.Journal)
			}
			return nil
		})
		// A grant past its expiry.
		g := w.grant(t, uuid.NewString(), w.otherBank.id, []string{"sales"}, 1)
		mustSync(t, w.agent, g)
		var id string
		polltest.Eventually(t, 30*time.Second, func() error {
			return w.tani.DB.QueryRow(ctx, `SELECT consent_id::text FROM ingest.consents WHERE grantee_org_id = $1`, w.otherBank.id).Scan(&id)
		})
		if _, err := w.tani.DB.Exec(ctx, `UPDATE ingest.consents SET expires_at = granted_at + interval '1 millisecond' WHERE consent_id = $1`, id); err != nil {
			t.Fatal(err)
		}
		w.waitConsent(t, w.otherBank, id, func(c consent.Consent) error {
			n := len(c.Journal)
			if c.Status != consent.StatusExpired || n < 2 || c.Journal[n-1].Event != "expired" || !c.Journal[n-1].Journaled {
				return fmt.Errorf("status %s, journal %+v", c.Status, c.Journal)
			}
			return nil
		})
	})

	t.Run("ListAndIsolation", func(t *testing.T) {
		var page struct {
			Consents   []consent.Consent
			NextCursor string `json:"next_cursor"`
		}
		code, body := call(t, w.tani, "GET", bank.api()+"/consents?farmer_id="+w.farmer, bank.key, nil)
		mustJSON(t, code, body, http.StatusOK, &page)
		if len(page.Consents) != 1 || page.Consents[0].ID != req.ID || page.Consents[0].Status != consent.StatusRevoked {
			t.Errorf("bank's consents: %+v", page.Consents)
		}
		code, body = call(t, w.tani, "GET", bank.api()+"/consents?status=authorised", bank.key, nil)
		mustJSON(t, code, body, http.StatusOK, &page)
		if len(page.Consents) != 0 {
			t.Errorf("bank's authorised consents: %+v, want none", page.Consents)
		}
		for name, tc := range map[string]struct {
			o    org
			path string
		}{
			"OtherBank":         {w.otherBank, "/bank/v1/consents/" + req.ID},
			"DistributorsRoute": {dist, "/distributor/v1/consents/" + req.ID},
			"Unknown":           {bank, "/bank/v1/consents/" + uuid.NewString()},
		} {
			if code, body := call(t, w.tani, "GET", tc.path, tc.o.key, nil); code != http.StatusNotFound {
				t.Errorf("%s: got %d %s, want 404", name, code, body)
			}
		}
		if code, _ := call(t, w.tani, "GET", "/distributor/v1/consents/"+req.ID, bank.key, nil); code != http.StatusForbidden {
			t.Errorf("bank key on the distributors' API: got %d, want 403", code)
		}
		code, body = call(t, w.tani, "GET", w.otherBank.api()+"/consents", w.otherBank.key, nil)
		mustJSON(t, code, body, http.StatusOK, &page)
		for _, c := range page.Consents {
			if c.ID == req.ID {
				t.Errorf("another bank lists the bank's consent")
			}
		}
	})
}

// TestConsentRequests_BadInput: every bad request is a 400 naming the
// field, and stores nothing.
func TestConsentRequests_BadInput(t *testing.T) {
	w := mustWorld(t)
	ok := func() map[string]any {
		return map[string]any{"farmer_id": w.farmer, "scopes": []string{"plots"}, "duration_days": 30, "purpose": "loan"}
	}
	with := func(k string, v any) map[string]any {
		m := ok()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	cases := map[string]struct {
		body  any
		field string
	}{
		"UnknownFarmer":     {with("farmer_id", uuid.NewString()), "farmer_id"},
		"MalformedFarmer":   {with("farmer_id", "F-42"), "farmer_id"},
		"UppercaseFarmer":   {with("farmer_id", strings.ToUpper(w.farmer)), "farmer_id"},
		"NoScopes":          {with("scopes", []string{}), "scopes"},
		"UnknownScope":      {with("scopes", []string{"plots", "salary"}), "scopes[1]"},
		"ScopeTwice":        {with("scopes", []string{"plots", "plots"}), "scopes[1]"},
		"ExpiryPast":        {with("duration_days", -5), "duration_days"},
		"ExpiryNow":         {with("duration_days", 0), "duration_days"},
		"ExpiryOver180Days": {with("duration_days", 181), "duration_days"},
		"NoPurpose":         {with("purpose", nil), "purpose"},
		"BlankPurpose":      {with("purpose", "   "), "purpose"},
		"OversizePurpose":   {with("purpose", strings.Repeat("p", 501)), "purpose"},
		"ControlInPurpose":  {with("purpose", "loan\u001b[31m"), "purpose"},
		"UnknownField":      {with("expires_at", time.Now().Add(time.Hour)), "expires_at"},
		"NotJSON":           {"farmer", "body"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, body := call(t, w.tani, "POST", "/bank/v1/consent-requests", w.bank.key, tc.body)
			if code != http.StatusBadRequest || !strings.Contains(string(body), `"field":"`+tc.field+`"`) {
				t.Errorf("got %d %s, want 400 naming %s", code, body, tc.field)
			}
		})
	}
	var n int
	w.tani.DB.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM consent.requests) + (SELECT count(*) FROM consent.events)`).Scan(&n)
	if n != 0 {
		t.Errorf("%d rows stored by refused requests, want 0", n)
	}
	for name, path := range map[string]string{
		"MalformedConsentID": "/bank/v1/consents/NOT-A-UUID",
		"BadStatusFilter":    "/bank/v1/consents?status=pending",
		"BadLimit":           "/bank/v1/consents?limit=0",
		"BadCursor":          "/bank/v1/consents?cursor=xyz",
	} {
		if code, body := call(t, w.tani, "GET", path, w.bank.key, nil); code != http.StatusBadRequest {
			t.Errorf("%s: got %d %s, want 400", name, code, body)
		}
	}
	// 1-day and 180-day requests are fine.
	for _, days := range []int{180} {
		if code, body := call(t, w.tani, "POST", "/bank/v1/consent-requests", w.bank.key, with("duration_days", days)); code != http.StatusCreated {
			t.Errorf("%d days: got %d %s, want 201", days, code, body)
		}
	}
}
