package ledger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/ledger/verify"
)

// A service such as attest appends revisions of farm records in batches and
// hands out receipts that anyone can verify offline with the log's key.
func Example() {
	ctx := context.Background()
	var j *ledger.Journal // from ledger.New and Start, wired by internal/app

	appended, err := j.Append(ctx,
		ledger.Revision{
			RecordID:     "0f9a3c52-5d0e-4c1b-9a57-2f1e8e0d1c3b",
			Kind:         "plot.mapped",
			Revision:     1,
			Payload:      []byte(`{"area_m2":1200,"crop":"maize"}`), // canonical JSON
			OccurredAt:   time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC),
			SignatureRef: "device:7c1e/sig:0001",
		},
	)
	if err != nil {
		return // apperr.Conflict if revision 1 exists with other content
	}
	fmt.Println("leaf", appended[0].LeafIndex)

	receipt, err := j.Receipt(ctx, "0f9a3c52-5d0e-4c1b-9a57-2f1e8e0d1c3b", 1)
	if err != nil {
		return
	}
	data, _ := json.Marshal(receipt)

	// Anywhere, with no database: the bank checks the receipt.
	res, err := verify.VerifyReceipt(data, j.VerifierKey())
	if err != nil {
		fmt.Println("receipt does not verify:", err)
		return
	}
	fmt.Println(res.Entry.RecordID, res.Entry.Revision, res.TreeSize)
}
