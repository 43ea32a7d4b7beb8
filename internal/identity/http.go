package identity

import (
	"github.com/jackc/pgx/v5"
)

// pgxCollect scans every row into a new T through the destinations fields
// gives, and returns them (an empty slice, never nil, so JSON shows []).
func pgxCollect[T any](rows pgx.Rows, fields func(*T) []any) ([]T, error) {
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		var t T
		if err := rows.Scan(fields(&t)...); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
