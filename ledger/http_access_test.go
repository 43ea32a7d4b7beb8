package ledger_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
)

// farmerPayload is what a farmer's revision says, as an agent captured it.
const farmerPayload = `{"name":"Siti Rahayu","village":"Sukamaju","boundary":{"type":"Polygon","coordinates":[[[106.8271,-6.1751],[106.8283,-6.1751],[106.8283,-6.1762],[106.8271,-6.1751]]]}}`

// farmerValues are the strings no anonymous answer may contain, in clear or
// as the base64 a JSON []byte field would carry.
var farmerValues = []string{"Siti Rahayu", "Sukamaju", "106.8271", base64.StdEncoding.EncodeToString([]byte(farmerPayload))}

func TestHTTP_PayloadAccess(t *testing.T) {
	ctx := context.Background()
	j := ledgertest.MustJournal(t)
	srv := mustServer(t, j)
	if _, err := j.Append(ctx, ledger.Revision{RecordID: "farmer-1", Kind: "farmer.registered", Revision: 1,
		Payload: []byte(farmerPayload), OccurredAt: t0, SignatureRef: "device:d1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	noFarmerValues := func(t *testing.T, body []byte) {
		t.Helper()
		for _, v := range farmerValues {
			if bytes.Contains(body, []byte(v)) {
				t.Errorf("answer holds the farmer's %q: %s", v, body)
			}
		}
	}

	t.Run("OKAnonymousEntriesAreLeavesWithoutPayload", func(t *testing.T) {
		code, _, body := get(t, srv, "/ledger/v1/entries")
		var e struct {
			Entries []ledger.RawEntry `json:"entries"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &e) != nil || len(e.Entries) != 1 {
			t.Fatalf("got %d %s, want 200 and one entry", code, body)
		}
		noFarmerValues(t, body)
		noFarmerValues(t, e.Entries[0].Data) // the leaf itself, decoded
		// What an auditor needs is there: the leaf commits to the payload.
		leaf, err := verify.ParseEntry(e.Entries[0].Data)
		if err != nil || leaf.RecordID != "farmer-1" || leaf.PayloadHash != sha256.Sum256([]byte(farmerPayload)) {
			t.Errorf("got leaf %+v, %v, want farmer-1 committing to the payload's SHA-256", leaf, err)
		}
	})
	t.Run("OKAnonymousReceiptCarriesNoPayload", func(t *testing.T) {
		code, _, body := get(t, srv, "/ledger/v1/records/farmer-1/receipt")
		if code != http.StatusOK {
			t.Fatalf("got %d %s, want 200", code, body)
		}
		if _, err := verify.VerifyReceipt(body, j.VerifierKey()); err != nil {
			t.Errorf("receipt does not verify: %v", err)
		}
		var r verify.Receipt
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		noFarmerValues(t, body)
		noFarmerValues(t, r.Entry)
	})
	t.Run("ErrUnauthorizedAnonymousHistory", func(t *testing.T) {
		code, _, body := get(t, srv, "/ledger/v1/records/farmer-1/history")
		if e := errorCode(t, body); code != http.StatusUnauthorized || e != apperr.Unauthorized {
			t.Errorf("got %d %s, want 401 unauthorized", code, body)
		}
		noFarmerValues(t, body)
	})
	t.Run("ErrUnauthorizedHistoryOfUnknownRecord", func(t *testing.T) {
		// Refused before the lookup: no probing for which records exist.
		if code, _, body := get(t, srv, "/ledger/v1/records/nope/history"); code != http.StatusUnauthorized {
			t.Errorf("got %d %s, want 401", code, body)
		}
	})
	t.Run("ErrUnauthorizedWrongToken", func(t *testing.T) {
		code, _, body := getAs(t, srv, "/ledger/v1/records/farmer-1/history", testOperatorToken+"x")
		if code != http.StatusUnauthorized {
			t.Errorf("got %d %s, want 401", code, body)
		}
		noFarmerValues(t, body)
	})
	t.Run("OKOperatorReadsHistory", func(t *testing.T) {
		code, _, body := getAs(t, srv, "/ledger/v1/records/farmer-1/history", testOperatorToken)
		var h struct {
			Revisions []ledger.RecordRevision `json:"revisions"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &h) != nil || len(h.Revisions) != 1 || string(h.Revisions[0].Payload) != farmerPayload {
			t.Errorf("got %d %s, want the revision with its payload", code, body)
		}
	})
	t.Run("ErrForbiddenByAuthorizer", func(t *testing.T) {
		// The authorizer sees the record: a consent gate can allow one
		// farmer's records and refuse another's.
		srv := serveWith(t, j, func(c echo.Context, recordID string, read func(context.Context, pgx.Tx) error) error {
			if recordID == "farmer-1" {
				return apperr.Errorf(apperr.Forbidden, "no consent")
			}
			return read(c.Request().Context(), nil)
		})
		code, _, body := get(t, srv, "/ledger/v1/records/farmer-1/history")
		if e := errorCode(t, body); code != http.StatusForbidden || e != apperr.Forbidden {
			t.Errorf("got %d %s, want 403 forbidden", code, body)
		}
		noFarmerValues(t, body)
	})
	t.Run("ErrForbiddenWithoutAuthorizer", func(t *testing.T) {
		srv := serveWith(t, j, nil)
		code, _, body := getAs(t, srv, "/ledger/v1/records/farmer-1/history", testOperatorToken)
		if code != http.StatusForbidden {
			t.Errorf("got %d %s, want 403: a journal mounted without an authorizer serves no payloads", code, body)
		}
		noFarmerValues(t, body)
	})
}

// serveWith serves the journal's routes with the given payload authorizer.
func serveWith(t *testing.T, j *ledger.Journal, readPayload ledger.PayloadAuthorizer) *httptest.Server {
	t.Helper()
	s := httpserver.New(httpserver.Config{BodyLimit: "1M"}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	j.Routes(s.Echo.Group("/ledger/v1"), readPayload)
	srv := httptest.NewServer(s.Echo)
	t.Cleanup(srv.Close)
	return srv
}

func errorCode(t *testing.T, body []byte) apperr.Code {
	t.Helper()
	var e httpserver.ErrorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %s: %v", body, err)
	}
	return e.Error.Code
}
