package ledger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
)

// testOperatorToken is the bearer token mustServer's payload authorizer
// accepts, as the composition root's accepts the operator token.
const testOperatorToken = "test-operator-token-0123456789abcdef"

// mustServer serves the journal's routes on the real echo instance with
// Tani's common error handler; payloads are served to testOperatorToken.
func mustServer(t *testing.T, j *ledger.Journal) *httptest.Server {
	t.Helper()
	s := httpserver.New(httpserver.Config{BodyLimit: "1M"}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	j.Routes(s.Echo.Group("/ledger/v1"), ledger.Allow(func(c echo.Context) error { return auth.CheckOperator(c, testOperatorToken) }))
	srv := httptest.NewServer(s.Echo)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string) (int, string, []byte) {
	t.Helper()
	return getAs(t, srv, path, "")
}

// getAs is get with a bearer token (none if empty).
func getAs(t *testing.T, srv *httptest.Server, path, token string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

func TestHTTP(t *testing.T) {
	ctx := context.Background()
	j := ledgertest.MustJournal(t)
	srv := mustServer(t, j)

	t.Run("ErrNoCheckpointYet", func(t *testing.T) {
		if code, _, body := get(t, srv, "/ledger/v1/checkpoint"); code != http.StatusNotFound {
			t.Errorf("got %d %s, want 404", code, body)
		}
	})
	for i := range 12 {
		if _, err := j.Append(ctx, rev(fmt.Sprintf("rec-%d", i), 1, `{}`)); err != nil {
			t.Fatal(err)
		}
		if i == 4 || i == 11 {
			if _, err := j.SignCheckpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("OKCheckpoint", func(t *testing.T) {
		code, ctype, body := get(t, srv, "/ledger/v1/checkpoint")
		if code != http.StatusOK || !strings.HasPrefix(ctype, "text/plain") {
			t.Fatalf("got %d %s, want 200 text/plain", code, ctype)
		}
		cp, err := verify.VerifyCheckpoint(body, j.Verifier())
		if err != nil || cp.Size != 12 {
			t.Errorf("got checkpoint %+v, %v, want a verified checkpoint of size 12", cp, err)
		}
		code, _, body = get(t, srv, "/ledger/v1/checkpoints/5")
		if cp, err := verify.VerifyCheckpoint(body, j.Verifier()); code != http.StatusOK || err != nil || cp.Size != 5 {
			t.Errorf("checkpoint 5: got %d %v, want a verified checkpoint of size 5", code, err)
		}
	})
	t.Run("OKReceipt", func(t *testing.T) {
		code, _, body := get(t, srv, "/ledger/v1/records/rec-3/receipt?revision=1")
		if code != http.StatusOK {
			t.Fatalf("got %d %s, want 200", code, body)
		}
		res, err := verify.VerifyReceipt(body, j.VerifierKey())
		if err != nil {
			t.Fatalf("receipt from HTTP does not verify: %v", err)
		}
		if res.Entry.RecordID != "rec-3" {
			t.Errorf("got record %q, want rec-3", res.Entry.RecordID)
		}
	})
	t.Run("OKReceiptInOlderCheckpoint", func(t *testing.T) {
		code, _, body := get(t, srv, "/ledger/v1/records/rec-3/receipt?tree_size=5")
		res, err := verify.VerifyReceipt(body, j.VerifierKey())
		if code != http.StatusOK || err != nil || res.TreeSize != 5 || res.LeafIndex != 3 {
			t.Errorf("got %d %v %s, want leaf 3 in the checkpoint of size 5", code, err, body)
		}
	})
	t.Run("OKHistory", func(t *testing.T) {
		code, _, body := getAs(t, srv, "/ledger/v1/records/rec-3/history", testOperatorToken)
		var h struct {
			Revisions []ledger.RecordRevision `json:"revisions"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &h) != nil || len(h.Revisions) != 1 || string(h.Revisions[0].Payload) != "{}" {
			t.Errorf("got %d %s, want one revision with payload {}", code, body)
		}
	})
	t.Run("OKConsistency", func(t *testing.T) {
		code, _, body := get(t, srv, "/ledger/v1/proof/consistency?from=5&to=12")
		var p struct {
			Proof []verify.Bytes `json:"proof"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &p) != nil {
			t.Fatalf("got %d %s, want 200 and a proof", code, body)
		}
		cp5, _ := j.CheckpointAt(ctx, 5)
		cp12, _ := j.CheckpointAt(ctx, 12)
		hs := make([][]byte, len(p.Proof))
		for i := range p.Proof {
			hs[i] = p.Proof[i]
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, 5, 12, hs, cp5.Root[:], cp12.Root[:]); err != nil {
			t.Errorf("consistency proof from HTTP does not verify: %v", err)
		}
	})
	t.Run("OKEntries", func(t *testing.T) {
		code, _, body := get(t, srv, "/ledger/v1/entries?start=10&limit=5")
		var e struct {
			Entries []ledger.RawEntry `json:"entries"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &e) != nil || len(e.Entries) != 2 || e.Entries[0].Index != 10 {
			t.Errorf("got %d %s, want entries 10 and 11", code, body)
		}
	})
	for name, c := range map[string]struct {
		path string
		code int
		want string
	}{
		"ErrNotFoundRecord":        {"/ledger/v1/records/nope/receipt", 404, "not_found"},
		"ErrNotFoundRevision":      {"/ledger/v1/records/rec-1/receipt?revision=7", 404, "not_found"},
		"ErrNotFoundHistory":       {"/ledger/v1/records/nope/history", 404, "not_found"},
		"ErrNotFoundCheckpoint":    {"/ledger/v1/checkpoints/7", 404, "not_found"},
		"ErrInvalidFromAfterTo":    {"/ledger/v1/proof/consistency?from=12&to=5", 400, "invalid"},
		"ErrInvalidBeyondTree":     {"/ledger/v1/proof/consistency?from=5&to=13", 400, "invalid"},
		"ErrInvalidMissingSizes":   {"/ledger/v1/proof/consistency", 400, "invalid"},
		"ErrInvalidRevision":       {"/ledger/v1/records/rec-1/receipt?revision=x", 400, "invalid"},
		"ErrInvalidEntriesLimit":   {"/ledger/v1/entries?limit=100000", 400, "invalid"},
		"ErrInvalidCheckpointSize": {"/ledger/v1/checkpoints/zero", 400, "invalid"},
		"ErrInvalidHistoryTime":    {"/ledger/v1/records/rec-1/history?at=yesterday", 400, "invalid"},
		"ErrNotFoundHistoryAsOf":   {"/ledger/v1/records/rec-11/history?tree_size=5", 404, "not_found"},
		"ErrInvalidReceiptAfterCp": {"/ledger/v1/records/rec-11/receipt?tree_size=5", 400, "invalid"},
		"ErrNotFoundReceiptCp":     {"/ledger/v1/records/rec-1/receipt?tree_size=6", 404, "not_found"},
	} {
		t.Run(name, func(t *testing.T) {
			code, ctype, body := getAs(t, srv, c.path, testOperatorToken)
			var e httpserver.ErrorBody
			if code != c.code || !strings.HasPrefix(ctype, "application/json") || json.Unmarshal(body, &e) != nil || string(e.Error.Code) != c.want {
				t.Errorf("got %d %s %s, want %d with code %s", code, ctype, body, c.code, c.want)
			}
		})
	}
}

// TestHTTP_ReceiptOfUnjournaledRecord: a record the deciding module knows
// but the journal does not hold is explained, never a bare 404.
func TestHTTP_ReceiptOfUnjournaledRecord(t *testing.T) {
	ctx := context.Background()
	j := ledgertest.MustJournal(t)
	j.ExplainUnjournaled(func(_ context.Context, id string) (string, error) {
		if id == "being-journaled" {
			return "not yet journaled: attest verified it and its journal entry is being written; retry in a few seconds", nil
		}
		return "", nil
	})
	srv := mustServer(t, j)
	if _, err := j.Append(ctx, rev("journaled", 1, `{}`)); err != nil {
		t.Fatal(err)
	}
	t.Run("ErrNotYetJournaled", func(t *testing.T) {
		code, _, body := get(t, srv, "/ledger/v1/records/being-journaled/receipt")
		if want := "record being-journaled has no journal entry: not yet journaled"; code != http.StatusConflict || !strings.Contains(string(body), want) {
			t.Errorf("got %d %s, want 409 saying %q", code, body, want)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		if code, _, body := get(t, srv, "/ledger/v1/records/nobody-knows/receipt"); code != http.StatusNotFound {
			t.Errorf("got %d %s, want 404", code, body)
		}
	})
	t.Run("OK", func(t *testing.T) {
		if code, _, body := get(t, srv, "/ledger/v1/records/journaled/receipt"); code != http.StatusOK {
			t.Errorf("got %d %s, want 200", code, body)
		}
	})
}
