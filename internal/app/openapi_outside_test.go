package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/tani-platform/tani/internal/app/apptest"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/httpserver/openapitest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/mobile-api/client/clienttest"
)

// TestOpenAPI_OutsideClient loads the banks' and distributors' served
// OpenAPI documents with kin-openapi, an OpenAPI 3 library we did not
// write (internal/httpserver/openapitest), validates them as OpenAPI 3, and validates real requests and
// answers of representative routes against them (a credit profile, a
// score, product and catalog lists, consents, error bodies). It also
// checks the evidence bundle's checkpoint and inclusion proofs with
// golang.org/x/mod/sumdb/note, transparency-dev/formats and
// transparency-dev/merkle directly, not with our verifier.
func TestOpenAPI_OutsideClient(t *testing.T) {
	tani := apptest.MustStart(t, "-consent.sweep-interval=1h", "-mobile.access-digest-interval=0", "-ledger.checkpoint-interval=100ms",
		"-lending.servicing-interval=1h", "-marketplace.sweep-interval=1h", "-marketplace.demand-interval=0")
	m := &matrix{tani: tani, agent: clienttest.MustAgent(t, tani.URL, tani.OperatorToken, "Central Java"),
		records: map[string]map[consent.Scope]string{}}
	ctx := context.Background()
	bank, dist := m.mustParty(t, "bank"), m.mustParty(t, "distributor")
	farmer, stranger := m.mustFarmer(t), m.mustFarmer(t)
	polltest.Eventually(t, 60*time.Second, func() error {
		var n int
		if err := tani.DB.QueryRow(ctx, `SELECT count(*) FROM attest.records WHERE status = 'verified' AND leaf_index IS NOT NULL`).Scan(&n); err != nil {
			return err
		}
		if n < 4 {
			return fmt.Errorf("%d of 4 records journaled", n)
		}
		return nil
	})
	for _, p := range []*party{bank, dist} {
		m.grant(t, farmer, p.id, validScopes(), time.Now().Add(24*time.Hour), false)
	}

	bankDoc := openapitest.MustLoad(t, m.tani.URL, "/bank/v1/openapi.json", "")
	distDoc := openapitest.MustLoad(t, m.tani.URL, "/distributor/v1/openapi.json", dist.key)

	t.Run("Bank", func(t *testing.T) {
		var product struct{ ID string }
		json.Unmarshal(bankDoc.Check(t, "POST", "/bank/v1/products", bank.key, lendingProduct(), http.StatusCreated), &product)
		bankDoc.Check(t, "GET", "/bank/v1/products", bank.key, nil, http.StatusOK)
		bankDoc.Check(t, "GET", "/bank/v1/products/"+product.ID, bank.key, nil, http.StatusOK)
		bankDoc.Check(t, "GET", "/bank/v1/farmers/"+farmer+"/profile", bank.key, nil, http.StatusOK)
		bankDoc.Check(t, "POST", "/bank/v1/farmers/"+farmer+"/score", bank.key, map[string]any{"product_id": product.ID}, http.StatusOK)
		var req struct{ ID string }
		json.Unmarshal(bankDoc.Check(t, "POST", "/bank/v1/consent-requests", bank.key,
			map[string]any{"farmer_id": stranger, "scopes": []string{"plots"}, "duration_days": 30, "purpose": "working capital"}, http.StatusCreated), &req)
		bankDoc.Check(t, "GET", "/bank/v1/consents", bank.key, nil, http.StatusOK)
		bankDoc.Check(t, "GET", "/bank/v1/consents/"+req.ID, bank.key, nil, http.StatusOK)
		bankDoc.Check(t, "GET", "/bank/v1/webhooks/event-types", bank.key, nil, http.StatusOK)
		bankDoc.Check(t, "POST", "/bank/v1/webhooks", bank.key, map[string]any{"url": matrixHookURL, "event_types": []string{"consent.revoked"}}, http.StatusCreated)
		bankDoc.Check(t, "GET", "/bank/v1/webhooks", bank.key, nil, http.StatusOK)
		bankDoc.Check(t, "GET", "/bank/v1/portfolio", bank.key, nil, http.StatusOK)
		// Error bodies: no consent (403), bad input with fields (400),
		// unknown product (404), no credential (401).
		bankDoc.Check(t, "GET", "/bank/v1/farmers/"+stranger+"/profile", bank.key, nil, http.StatusForbidden)
		bad := lendingProduct()
		bad["min_amount"] = -1
		bankDoc.CheckBad(t, "POST", "/bank/v1/products", bank.key, bad, http.StatusBadRequest)
		bankDoc.Check(t, "GET", "/bank/v1/products/"+uuid.NewString(), bank.key, nil, http.StatusNotFound)
		bankDoc.CheckBad(t, "GET", "/bank/v1/products", "tani_not_a_key", nil, http.StatusUnauthorized)
	})
	t.Run("Distributor", func(t *testing.T) {
		var product struct{ ID string }
		json.Unmarshal(distDoc.Check(t, "POST", "/distributor/v1/products", dist.key, marketProduct(), http.StatusCreated), &product)
		distDoc.Check(t, "GET", "/distributor/v1/products", dist.key, nil, http.StatusOK)
		distDoc.Check(t, "POST", "/distributor/v1/orders", dist.key, marketOrder(farmer, product.ID), http.StatusCreated)
		distDoc.Check(t, "GET", "/distributor/v1/orders", dist.key, nil, http.StatusOK)
		distDoc.Check(t, "GET", "/distributor/v1/consents", dist.key, nil, http.StatusOK)
		distDoc.Check(t, "GET", "/distributor/v1/webhooks/event-types", dist.key, nil, http.StatusOK)
		distDoc.Check(t, "POST", "/distributor/v1/orders", dist.key, marketOrder(stranger, product.ID), http.StatusForbidden)
		distDoc.Check(t, "GET", "/distributor/v1/products/"+uuid.NewString(), dist.key, nil, http.StatusNotFound)
	})
	t.Run("EvidenceBundleProofs", func(t *testing.T) {
		body := bankDoc.Check(t, "GET", "/bank/v1/farmers/"+farmer+"/evidence-bundle", bank.key, nil, http.StatusOK)
		pub, err := os.ReadFile(filepath.Join(tani.DataDir, "ledger.pub"))
		if err != nil {
			t.Fatal(err)
		}
		// A bundle's sections are land, crops, inputs, harvests, sales and
		// loans: the plot's record is in it (and the score journaled above).
		verifyBundleOutside(t, body, strings.TrimSpace(string(pub)), map[consent.Scope]string{consent.Plots: m.records[farmer][consent.Plots]})
	})
}

// verifyBundleOutside checks an evidence bundle with libraries we did not
// write: the checkpoint's signature (sumdb note) and body (the tlog
// checkpoint format), each entry's payload against the SHA-256 its entry
// commits to, and each inclusion proof from the RFC 6962 leaf hash of the
// entry to the signed root (transparency-dev/merkle). It also shows the
// check can fail: a proof for a changed entry must not verify.
func verifyBundleOutside(t *testing.T, data []byte, verifierKey string, records map[consent.Scope]string) {
	t.Helper()
	var b struct {
		Format     string `json:"format"`
		Checkpoint string `json:"checkpoint"`
		TreeSize   uint64 `json:"tree_size"`
		Items      []struct {
			RecordID  string   `json:"record_id"`
			Payload   *string  `json:"payload"`
			Entry     string   `json:"entry"`
			LeafIndex uint64   `json:"leaf_index"`
			Inclusion []string `json:"inclusion"`
		} `json:"items"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		t.Fatal(err)
	}
	cp, _, _, err := log.ParseCheckpoint([]byte(b.Checkpoint), v.Name(), v)
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if cp.Size != b.TreeSize {
		t.Errorf("checkpoint size %d, bundle says %d", cp.Size, b.TreeSize)
	}
	b64 := func(s string) []byte {
		t.Helper()
		out, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			t.Fatalf("base64 %q: %v", s, err)
		}
		return out
	}
	seen := map[string]bool{}
	for _, it := range b.Items {
		entry := b64(it.Entry)
		hashes := make([][]byte, len(it.Inclusion))
		for i, h := range it.Inclusion {
			hashes[i] = b64(h)
		}
		leaf := rfc6962.DefaultHasher.HashLeaf(entry)
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, it.LeafIndex, cp.Size, leaf, hashes, cp.Hash); err != nil {
			t.Errorf("record %s (leaf %d): inclusion proof: %v", it.RecordID, it.LeafIndex, err)
		}
		changed := bytes.Replace(entry, []byte(it.RecordID), []byte(uuid.NewString()), 1)
		if proof.VerifyInclusion(rfc6962.DefaultHasher, it.LeafIndex, cp.Size, rfc6962.DefaultHasher.HashLeaf(changed), hashes, cp.Hash) == nil {
			t.Errorf("record %s: a changed entry verifies too: the check cannot fail", it.RecordID)
		}
		if it.Payload != nil {
			sum := sha256.Sum256(b64(*it.Payload))
			if !bytes.Contains(entry, []byte("\npayload-sha256 "+base64.StdEncoding.EncodeToString(sum[:])+"\n")) {
				t.Errorf("record %s: the payload does not hash to what its entry commits to", it.RecordID)
			}
		}
		seen[it.RecordID] = true
	}
	for scope, id := range records {
		if !seen[id] {
			t.Errorf("the bundle holds no entry of the farmer's %s record %s", scope, id)
		}
	}
}
