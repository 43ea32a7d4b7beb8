package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// CopyNew stores rows in table by one binary COPY, all or none, under a
// savepoint of tx. A batch of rows that are all new costs Postgres much
// less this way than an INSERT … ON CONFLICT from arrays (no speculative
// insertion, no array decoding). When the COPY fails — a unique violation
// when a row is already there — tx is rolled back to the savepoint and
// stays usable: the caller tells the rows apart with its INSERT … ON
// CONFLICT and goes on. The error is returned as is, so Code tells a
// unique violation from anything else.
//
// The savepoint is not released on success: the transaction's commit
// ends it, and a RELEASE would be one more round trip for nothing.
func CopyNew(ctx context.Context, tx pgx.Tx, table pgx.Identifier, columns []string, rows [][]any) error {
	return CopyNewTables(ctx, tx, TableRows{Table: table, Columns: columns, Rows: rows})
}

// TableRows are rows of one table, in the order of its columns.
type TableRows struct {
	Table   pgx.Identifier
	Columns []string
	Rows    [][]any
}

// CopyNewTables is CopyNew for several tables, one COPY each, all or none
// under one savepoint: a failing COPY rolls back the ones before it.
func CopyNewTables(ctx context.Context, tx pgx.Tx, tables ...TableRows) error {
	sp, err := tx.Begin(ctx) // a savepoint
	if err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	for _, t := range tables {
		if _, err := sp.CopyFrom(ctx, t.Table, t.Columns, pgx.CopyFromRows(t.Rows)); err != nil {
			if rbErr := sp.Rollback(ctx); rbErr != nil {
				return fmt.Errorf("copy %d rows into %s: %w (rollback to savepoint: %v)", len(t.Rows), t.Table.Sanitize(), err, rbErr)
			}
			return fmt.Errorf("copy %d rows into %s: %w", len(t.Rows), t.Table.Sanitize(), err)
		}
	}
	return nil
}
