package attest

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NotJournaledReason says, for the ledger's receipt route, why a record
// attest knows has no journal entry: still being decided, flagged for
// review, rejected, or verified with its entry not committed yet. It
// returns "" for a record attest does not know or has journaled, so the
// journal answers for itself. It reads only the public view
// attest.record_status, so any process sharing the database can call it,
// whether or not it runs the attest module.
func NotJournaledReason(ctx context.Context, pool *pgxpool.Pool, recordID string) (string, error) {
	if _, err := uuid.Parse(recordID); err != nil {
		return "", nil // farm records and reviews are UUIDs; anything else is not attest's
	}
	var status string
	err := pool.QueryRow(ctx, `SELECT status FROM attest.record_status WHERE id = $1`, recordID).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("status of record %s: %w", recordID, err)
	}
	switch status {
	case StatusJournaling:
		return "not yet journaled: attest verified it and its journal entry is being written; retry in a few seconds", nil
	case StatusPending:
		return "not journaled: attest has not decided it yet", nil
	case StatusFlagged:
		return "not journaled: attest flagged it for review; it is journaled if a reviewer approves it", nil
	case StatusRejected:
		return "not journaled: attest rejected it, and rejected records are never journaled", nil
	}
	return "", nil // verified: journaled
}
