package ledger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger/ledgertest"
	"github.com/tani-platform/tani/ledger/verify"
)

// TestReceipts: many receipts in one checkpoint, each verifying on its
// own; the newest anchored checkpoint covering them is preferred.
func TestReceipts(t *testing.T) {
	ctx := context.Background()
	j := ledgertest.MustJournal(t)
	for i := range 40 {
		if _, err := j.Append(ctx, rev(fmt.Sprintf("r%d", i), 1, fmt.Sprintf(`{"v":%d}`, i))); err != nil {
			t.Fatal(err)
		}
		if i == 19 {
			if _, err := j.SignCheckpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("OKLatestWhenNoneAnchored", func(t *testing.T) {
		cp, rs, err := j.Receipts(ctx, []int64{3, 17, 39, 0})
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size != 40 || len(rs) != 4 {
			t.Fatalf("checkpoint %d with %d receipts, want 40 with 4", cp.Size, len(rs))
		}
		for i, want := range []int64{3, 17, 39, 0} {
			data, _ := json.Marshal(rs[i])
			res, err := verify.VerifyReceipt(data, j.VerifierKey())
			if err != nil {
				t.Fatalf("receipt %d: %v", want, err)
			}
			if res.LeafIndex != uint64(want) || res.Entry.RecordID != fmt.Sprintf("r%d", want) {
				t.Errorf("receipt %d proves leaf %d of %s", i, res.LeafIndex, res.Entry.RecordID)
			}
		}
	})
	t.Run("OKAnchoredPreferred", func(t *testing.T) {
		a := verify.Anchor{Channel: "tani", Chaincode: "anchor", TxID: "tx20", BlockNumber: 3}
		if err := j.SetAnchor(ctx, 20, a); err != nil {
			t.Fatal(err)
		}
		cp, rs, err := j.Receipts(ctx, []int64{5, 19})
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size != 20 || rs[0].Anchor == nil || rs[0].Anchor.TxID != "tx20" {
			t.Errorf("got checkpoint %d anchored %+v, want the anchored checkpoint 20", cp.Size, rs[0].Anchor)
		}
		// A leaf beyond the anchored tree: the newest checkpoint instead.
		if cp, _, err := j.Receipts(ctx, []int64{5, 30}); err != nil || cp.Size != 40 {
			t.Errorf("got checkpoint %v (%v), want 40", cp, err)
		}
	})
	t.Run("ErrUnknownLeaf", func(t *testing.T) {
		if _, _, err := j.Receipts(ctx, []int64{1, 400}); !apperr.Is(err, apperr.NotFound) {
			t.Errorf("got %v, want NotFound", err)
		}
	})
	t.Run("OKPayloads", func(t *testing.T) {
		ps, err := j.Payloads(ctx, []int64{2, 7})
		if err != nil || string(ps[2]) != `{"v":2}` || string(ps[7]) != `{"v":7}` {
			t.Errorf("got %v, %v", ps, err)
		}
	})
}
