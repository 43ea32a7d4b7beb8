package lending_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/verify"
	"github.com/tani-platform/tani/services/lending"
)

// TestScore_ProvenanceAndHints: a farmer with a walked plot, a plot under
// review and a plot whose measurement expired. The profile shows each
// with its level, the flagged one without a receipt; the score counts
// them at their confidence and hints at the steps that raise the limit;
// carrying out a hint as attest would gives exactly the hinted limit; the
// journaled score names the model and the evidence leaves.
func TestScore_ProvenanceAndHints(t *testing.T) {
	e := mustEnv(t)
	b := e.bank("Bank A")
	p := b.product("Padi", nil, nil, "bullet")
	f, _ := e.typical("Central Java")
	review, reviewRec := f.plot(0.8, flagged)
	old, _ := f.plot(0.5, expired)
	f.consent(b.ID)

	var prof lending.Profile
	b.must(http.StatusOK, "GET", "/bank/v1/farmers/"+f.ID+"/profile", nil, &prof)
	levels := map[string]lending.Item{}
	for _, it := range prof.Land.Plots {
		levels[it.Facts["plot_id"].(string)] = it
	}
	if it := levels[review]; it.Verification.Status != "flagged" || it.Verification.Level != "unverified" || it.Receipt != nil || it.Verification.Reason == nil {
		t.Errorf("plot under review: %+v", it.Verification)
	}
	if it := levels[old]; it.Verification.Level != "expired" || it.Receipt == nil || it.Verification.ExpiresAt == nil {
		t.Errorf("expired plot: %+v", it.Verification)
	}
	if prof.Journal == nil || prof.Journal.TreeSize == 0 {
		t.Fatal("profile names no checkpoint")
	}
	for _, it := range append(prof.Crops, prof.Harvests...) {
		raw, _ := json.Marshal(it.Receipt)
		res, err := verify.VerifyReceipt(raw, e.journal.VerifierKey())
		if err != nil || res.Entry.RecordID != it.RecordID || res.TreeSize != prof.Journal.TreeSize {
			t.Errorf("receipt of %s: %v", it.RecordID, err)
		}
	}

	var sc lending.ScoreView
	b.must(http.StatusOK, "POST", "/bank/v1/farmers/"+f.ID+"/score", map[string]any{"product_id": p.ID, "amount": money(5_000_000_00)}, &sc)
	if len(sc.Hints) != 2 || sc.Hints[0].Limit <= sc.Limit {
		t.Fatalf("hints %+v (limit %d)", sc.Hints, sc.Limit)
	}
	if sc.Confidence >= 0.85 || sc.Confidence <= 0.3 {
		t.Errorf("confidence %v: a mix of walked, expired and unverified land", sc.Confidence)
	}
	if sc.ScorePath != "/bank/v1/scores/"+sc.ID || len(sc.Reasons) > 4 || sc.PDMethod == "" || sc.Model != "tani-smallholder-v1" {
		t.Errorf("score %+v", sc)
	}
	// The journaled score: model, digest, and the leaves of the evidence.
	// The bank was answered before the entry was appended; it follows,
	// and its leaf is recorded with the stored score.
	hist := awaitJournaled(t, e, sc.ID)
	var payload struct {
		Result struct {
			Model       string `json:"model"`
			ModelSHA256 string `json:"model_sha256"`
			Score       int    `json:"score"`
		}
		EvidenceLeaves []int64 `json:"evidence_leaves"`
	}
	json.Unmarshal(hist.Payload, &payload)
	if payload.Result.Model != "tani-smallholder-v1" || len(payload.Result.ModelSHA256) != 64 || payload.Result.Score != sc.Score || len(payload.EvidenceLeaves) < 6 {
		t.Errorf("journaled score %+v (%s)", payload, hist.Payload)
	}

	var visit lending.ScoreView
	for _, h := range sc.Hints {
		if h.Action == "second_agent_visit" {
			if h.PlotID != review || h.Record.RecordID != reviewRec {
				t.Fatalf("visit hint %+v, want plot %s", h, review)
			}
			// A second agent's walk matches: attest approves the review
			// with provenance second_agent_visit and journals the record.
			ctx := context.Background()
			if _, err := e.pool.Exec(ctx, `UPDATE attest.records SET status = 'verified', reason = NULL WHERE record_id = $1`, reviewRec); err != nil {
				t.Fatal(err)
			}
			exp := time.Now().AddDate(1, 0, 0)
			for _, attr := range []string{"boundary", "area_ha"} {
				if _, err := e.pool.Exec(ctx, `INSERT INTO attest.provenance (record_id, attribute, method, verifier, verified_at, expires_at) VALUES ($1, $2, 'second_agent_visit', 'agent:second', now(), $3)`,
					reviewRec, attr, exp); err != nil {
					t.Fatal(err)
				}
			}
			app, err := e.journal.Append(ctx, ledger.Revision{RecordID: reviewRec, Kind: "plot.mapped", Revision: 1, Payload: []byte(`{"approved":true}`), OccurredAt: time.Now(), SignatureRef: "device:x"})
			if err != nil {
				t.Fatal(err)
			}
			e.pool.Exec(ctx, `UPDATE attest.records SET leaf_index = $2 WHERE record_id = $1`, reviewRec, app[0].LeafIndex)
			b.must(http.StatusOK, "POST", "/bank/v1/farmers/"+f.ID+"/score", map[string]any{"product_id": p.ID, "amount": money(5_000_000_00)}, &visit)
			if visit.Limit != h.Limit || visit.Score != h.Score {
				t.Errorf("hint announced limit %d score %d; after the visit: %d, %d", h.Limit, h.Score, visit.Limit, visit.Score)
			}
			if !strings.Contains(h.Message, review) {
				t.Errorf("hint message %q does not name the plot", h.Message)
			}
		}
	}
	if visit.ID == "" {
		t.Fatal("no second-agent-visit hint")
	}
}

// awaitJournaled waits until the score answered before its journal append
// is in the journal with its leaf recorded, and returns the entry.
func awaitJournaled(t *testing.T, e *env, scoreID string) ledger.RecordRevision {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var leaf *int64
		if err := e.pool.QueryRow(ctx, `SELECT leaf_index FROM lending.scores WHERE id = $1`, scoreID).Scan(&leaf); err != nil {
			t.Fatal(err)
		}
		if leaf != nil {
			hist, err := e.journal.Current(ctx, scoreID, ledger.AsOf{})
			if err != nil {
				t.Fatal(err)
			}
			if hist.LeafIndex != *leaf {
				t.Fatalf("score %s recorded at leaf %d, journaled at %d", scoreID, *leaf, hist.LeafIndex)
			}
			return hist
		}
		if time.Now().After(deadline) {
			t.Fatalf("score %s not journaled after 30 s", scoreID)
		}
	}
}

// TestScore_ErasureFence: owners erase independently, so a farmer's
// consents can still be live when lending's erasure has run. A score asked
// for then is refused and nothing is stored with the farmer's evidence,
// whether one farmer is scored or the book is re-scored.
func TestScore_ErasureFence(t *testing.T) {
	e := mustEnv(t)
	b := e.bank("Bank A")
	p := b.product("Padi", intp(500), intp(300), "bullet")
	kept, _ := disbursed(t, e, b, p)
	gone, _ := disbursed(t, e, b, p)
	ctx := context.Background()
	stored := func(farmer string) (n int) {
		t.Helper()
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM lending.scores WHERE farmer_id = $1`, farmer).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	keptBefore, goneBefore := stored(kept.ID), stored(gone.ID)
	// Lending's tombstone, as its erasure writes it under the farmer's lock.
	if _, err := e.pool.Exec(ctx, `INSERT INTO lending.erasures (erasure_id, farmer_id) VALUES ($1, $2)`, uuid.NewString(), gone.ID); err != nil {
		t.Fatal(err)
	}

	t.Run("ErrScoreOfAnErasedFarmer", func(t *testing.T) {
		raw := b.must(http.StatusNotFound, "POST", "/bank/v1/farmers/"+gone.ID+"/score", map[string]any{"product_id": p.ID}, nil)
		if !strings.Contains(string(raw), "forgotten") || stored(gone.ID) != goneBefore {
			t.Errorf("answer %s, %d scores stored (%d before); want a 404 saying the farmer asked to be forgotten, none stored", raw, stored(gone.ID), goneBefore)
		}
	})
	t.Run("OK_RescoreLeavesTheErasedFarmerOut", func(t *testing.T) {
		var res lending.RescoreResult
		b.must(http.StatusOK, "POST", "/bank/v1/rescore", map[string]any{"product_id": p.ID}, &res)
		if res.Farmers != 2 || res.Scored != 1 || res.Denied != 1 || stored(gone.ID) != goneBefore || stored(kept.ID) != keptBefore+1 {
			t.Errorf("rescore %+v; scores stored: erased farmer %d (%d before), other %d (%d before); want 1 scored, 1 denied, none of the erased farmer's",
				res, stored(gone.ID), goneBefore, stored(kept.ID), keptBefore)
		}
	})
}

// TestScore_ReadsOnlyPlotProvenance: a score reads only the plots' area
// and boundary provenance (a fifth of the rows a profile reads); the
// scorecard's evidence is the same as from every provenance row, for
// walked, corroborated, reviewed, expired and flagged plots beside the
// other records' provenance.
func TestScore_ReadsOnlyPlotProvenance(t *testing.T) {
	e := mustEnv(t)
	f, _ := e.typical("Central Java")
	for _, level := range []string{walked, corroborated, reviewed, expired, flagged} {
		f.plot(0.6, level)
	}
	at := time.Now().UTC()
	score, profile, err := lending.EvidenceBothWays(context.Background(), e.pool, f.ID, at)
	if err != nil {
		t.Fatal(err)
	}
	if len(score.Plots) != 6 || len(score.Cycles) == 0 || len(score.Sales) == 0 {
		t.Fatalf("evidence read: %d plots, %d cycles, %d sales", len(score.Plots), len(score.Cycles), len(score.Sales))
	}
	if !reflect.DeepEqual(score, profile) {
		t.Errorf("a score's read differs from a profile's:\n%+v\n%+v", score, profile)
	}
	levels := map[string]int{}
	for _, p := range score.Plots {
		levels[string(p.Level)]++
	}
	if len(levels) < 4 {
		t.Errorf("levels seen: %v", levels)
	}
}
