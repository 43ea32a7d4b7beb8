package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// NotSyncedDown is the application_name a transaction takes when it writes
// nothing a phone syncs down. Sync-down's cursor starts at the oldest
// transaction still running in the database, so that no change committed
// later is skipped; a transaction named so is left out of that, and a long
// one (the demand outlook's rebuild, tens of seconds) does not make every
// phone download its farmers again.
const NotSyncedDown = "tani: writes nothing synced down"

// MarkNotSyncedDown names tx so (SET LOCAL, for its life only). It must be
// the transaction's first statement, before it writes: from then on the
// name is what pg_stat_activity shows whenever the transaction holds an id.
func MarkNotSyncedDown(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SET LOCAL application_name = '`+NotSyncedDown+`'`)
	return err
}
