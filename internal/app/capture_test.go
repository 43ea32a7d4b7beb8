package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger/verify"
	"github.com/tani-platform/tani/mobile-api/client"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

var captureLoc = client.Location{Lat: -7.2505, Lon: 110.4005, AccuracyM: 4}

// TestCapture_EveryTypeReachesAVerdict sends one record of every type the
// way the field app does (phone client → /sync → ingest → attest) and
// follows each through the phone's status endpoint to attest's verdict;
// every verified record must be in the journal, with a receipt that
// verifies offline.
func TestCapture_EveryTypeReachesAVerdict(t *testing.T) {
	dataDir := t.TempDir()
	tani := apptest.MustStart(t, "-data-dir="+dataDir, "-log.level=info")
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()
	farmer, plot := uuid.NewString(), uuid.NewString()
	p := clienttest.Payloads(farmer, plot, time.Now())
	p["plot.mapped"]["declared_area"] = map[string]any{"value": 1.22, "unit": "ha"}

	ids := map[string]string{}
	sync := func(typ string, payload map[string]any) string {
		t.Helper()
		raw, id, err := agent.Record(record.Type(typ), time.Now().Add(-time.Hour), captureLoc, payload)
		if err != nil {
			t.Fatal(err)
		}
		res, err := agent.Sync(ctx, []json.RawMessage{raw})
		if err != nil {
			t.Fatalf("sync %s: %v", typ, err)
		}
		if res[0].Status != "accepted" {
			t.Fatalf("sync %s: %+v, want accepted", typ, res[0])
		}
		return id
	}
	// The farmer first: a consent needs a code sent to the farmer's
	// registered phone.
	for _, typ := range []string{"farmer.registered", "plot.mapped"} {
		ids[typ] = sync(typ, p[typ])
	}
	waitPhoneStatus(t, agent, ids["farmer.registered"], "ingested", "verified", "flagged")
	consent := uuid.NewString()
	ids["consent.granted"] = sync("consent.granted", grant(t, tani, agent, farmer, consent))
	waitPhoneStatus(t, agent, ids["consent.granted"], "ingested", "verified", "flagged")
	for _, typ := range []string{"crop.planted", "input.applied", "harvest.recorded", "sale.recorded"} {
		ids[typ] = sync(typ, p[typ])
	}
	p["consent.revoked"]["consent_id"] = consent
	ids["consent.revoked"] = sync("consent.revoked", p["consent.revoked"])

	key, err := os.ReadFile(filepath.Join(dataDir, "ledger.pub"))
	if err != nil {
		t.Fatalf("log public key: %v", err)
	}
	for _, typ := range []string{"farmer.registered", "plot.mapped", "crop.planted", "input.applied", "harvest.recorded", "sale.recorded", "consent.granted", "consent.revoked"} {
		t.Run(typ, func(t *testing.T) {
			st := waitPhoneStatus(t, agent, ids[typ], "verified", "flagged", "rejected", "refused")
			t.Logf("%s: %s %s", ids[typ], st.Status, reasonOf(st))
			switch st.Status {
			case "verified":
				res := mustReceipt(t, tani, ids[typ], strings.TrimSpace(string(key)))
				if res.Entry.RecordID != ids[typ] || res.Entry.Kind != typ {
					t.Errorf("receipt proves %s %s, want %s %s", res.Entry.RecordID, res.Entry.Kind, ids[typ], typ)
				}
			case "flagged": // waits for a reviewer; journaled once approved
			default:
				t.Errorf("status %s (%v), want verified or flagged", st.Status, reasonOf(st))
			}
		})
	}

	t.Run("OK_ConsentStoredThenRevoked", func(t *testing.T) {
		var farmerID, grantee, grantRecord string
		var scopes []string
		var expires time.Time
		var revokedRecord *string
		waitFor(t, "consent revoked in ingest.consents", func() bool {
			err := tani.DB.QueryRow(ctx, `
				SELECT farmer_id::text, grantee_org_id::text, scopes, expires_at, granted_record_id::text, revoked_record_id::text
				FROM ingest.consents WHERE consent_id = $1`, consent).
				Scan(&farmerID, &grantee, &scopes, &expires, &grantRecord, &revokedRecord)
			return err == nil && revokedRecord != nil
		})
		if farmerID != farmer || grantRecord != ids["consent.granted"] || *revokedRecord != ids["consent.revoked"] {
			t.Errorf("consent row: farmer %s, granted by %s, revoked by %s; want %s, %s, %s",
				farmerID, grantRecord, *revokedRecord, farmer, ids["consent.granted"], ids["consent.revoked"])
		}
		if !slices.Equal(scopes, []string{"plots", "harvests"}) || grantee == "" || time.Until(expires) < 89*24*time.Hour {
			t.Errorf("consent row: scopes %v, grantee %q, expires %s", scopes, grantee, expires)
		}
		// The grant was verified above, so it is in the journal.
		var journaled string
		err := tani.DB.QueryRow(ctx, `SELECT convert_from(payload, 'UTF8')::jsonb->'payload'->>'consent_id' FROM ledger.entries WHERE record_id = $1 AND kind = 'consent.granted'`,
			ids["consent.granted"]).Scan(&journaled)
		if err != nil || journaled != consent {
			t.Errorf("journaled consent grant names consent %q (%v), want %s", journaled, err, consent)
		}
	})

	t.Run("OK_RevocationSyncedBeforeItsGrant", func(t *testing.T) {
		// An offline phone may deliver the revocation first: the grant
		// then starts out revoked.
		late := uuid.NewString()
		rev := p["consent.revoked"]
		rev["consent_id"] = late
		revID := sync("consent.revoked", rev)
		waitPhoneStatus(t, agent, revID, "ingested", "verified", "flagged")
		grantID := sync("consent.granted", grant(t, tani, agent, farmer, late))
		waitPhoneStatus(t, agent, grantID, "verified", "flagged")
		var revokedBy string
		if err := tani.DB.QueryRow(ctx, `SELECT revoked_record_id::text FROM ingest.consents WHERE consent_id = $1`, late).Scan(&revokedBy); err != nil || revokedBy != revID {
			t.Errorf("late grant revoked by %q (%v), want %s", revokedBy, err, revID)
		}
	})
}

// grant asks for a consent code for farmer and returns a consent.granted
// payload carrying it, as the agent types it in after the farmer reads it
// out.
func grant(t *testing.T, tani *apptest.Running, agent *clienttest.Agent, farmer, consentID string) map[string]any {
	t.Helper()
	before := len(smsCodes(tani))
	challenge, err := agent.RequestOTP(context.Background(), farmer)
	if err != nil {
		t.Fatalf("request OTP: %v", err)
	}
	var codes []string
	waitFor(t, "consent code sent by SMS", func() bool { codes = smsCodes(tani); return len(codes) > before })
	return map[string]any{
		"farmer_id": farmer, "consent_id": consentID, "grantee_organization_id": uuid.NewString(),
		"scopes": []string{"plots", "harvests"}, "expires_at": time.Now().AddDate(0, 0, 90).UTC().Format(time.RFC3339),
		"otp_challenge_id": challenge, "otp_code": codes[len(codes)-1],
	}
}

var smsCode = regexp.MustCompile(`your consent code is (\d{6})`)

// smsCodes are the codes the development SMS sender logged, oldest first
// (the database holds only their hashes).
func smsCodes(tani *apptest.Running) []string {
	var out []string
	for _, line := range tani.Logs() {
		if m := smsCode.FindStringSubmatch(line); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// waitPhoneStatus polls the phone's status endpoint until the record is in
// one of the given statuses.
func waitPhoneStatus(t *testing.T, agent *clienttest.Agent, id string, statuses ...string) client.Status {
	t.Helper()
	var st client.Status
	var err error
	waitFor(t, "record "+id+" in "+strings.Join(statuses, "|"), func() bool {
		st, err = agent.Status(context.Background(), id)
		return err == nil && slices.Contains(statuses, st.Status)
	})
	return st
}

// mustReceipt waits for the record's receipt (journaling follows the
// decision's commit) and verifies it offline.
func mustReceipt(t *testing.T, tani *apptest.Running, id, key string) *verify.Result {
	t.Helper()
	var body []byte
	waitFor(t, "receipt of "+id, func() bool {
		resp, err := http.Get(tani.URL + "/ledger/v1/records/" + id + "/receipt")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK
	})
	res, err := verify.VerifyReceipt(body, key)
	if err != nil {
		t.Fatalf("receipt of %s does not verify: %v", id, err)
	}
	return res
}

func reasonOf(st client.Status) string {
	if st.Reason == nil {
		return ""
	}
	return *st.Reason
}

// waitFor polls cond until it holds; it fails the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	polltest.Eventually(t, 30*time.Second, func() error {
		if !cond() {
			return errors.New(what)
		}
		return nil
	})
}

// TestCapture_OneProcessReadsEachRecordOnce: in the all-in-one process,
// ingest and attest take the records /sync checked (record.Memo) instead
// of reading and verifying them again, and the memo is empty once they
// are done; every record is still stored and decided.
func TestCapture_OneProcessReadsEachRecordOnce(t *testing.T) {
	tani := apptest.MustStart(t)
	memo := tani.App.Memo()
	if memo == nil {
		t.Fatal("the all-in-one process has no memo")
	}
	agent := clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java")
	ctx := context.Background()
	farmer, plot := uuid.NewString(), uuid.NewString()
	var batch []json.RawMessage
	var ids []string
	for i, typ := range []string{"farmer.registered", "plot.mapped", "crop.planted", "input.applied", "harvest.recorded", "sale.recorded"} {
		p := clienttest.Payloads(farmer, plot, time.Now())[typ]
		raw, id, err := agent.Record(record.Type(typ), time.Now().Add(-time.Duration(60-i)*time.Minute), captureLoc, p)
		if err != nil {
			t.Fatal(err)
		}
		batch, ids = append(batch, raw), append(ids, id)
	}
	res, err := agent.Sync(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Status != "accepted" {
			t.Fatalf("record %d: %+v, want accepted", i, r)
		}
	}
	polltest.Eventually(t, 30*time.Second, func() error {
		var stored, decided int
		if err := tani.DB.QueryRow(ctx, `SELECT (SELECT count(*) FROM ingest.submissions WHERE id = ANY($1::uuid[])),
			(SELECT count(*) FROM attest.records WHERE record_id = ANY($1::uuid[]))`, ids).Scan(&stored, &decided); err != nil {
			return err
		}
		if stored != len(ids) || decided != len(ids) {
			return fmt.Errorf("%d stored and %d decided of %d", stored, decided, len(ids))
		}
		return nil
	})
	if got, want := memo.Taken(), uint64(2*len(ids)); got != want || memo.Len() != 0 {
		t.Errorf("memo taken %d times and holding %d records, want %d takes (ingest and attest, each record) and none left", got, memo.Len(), want)
	}
}
