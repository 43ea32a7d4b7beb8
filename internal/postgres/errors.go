package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
)

// Error codes the store layers translate (PostgreSQL appendix A).
const (
	CodeUniqueViolation     = "23505"
	CodeForeignKeyViolation = "23503"
	CodeCheckViolation      = "23514"
	// CodeSerializationFailure: a repeatable-read or serializable
	// transaction lost a race with a concurrent one; retrying it is safe.
	CodeSerializationFailure = "40001"
)

// Code returns the SQLSTATE of a PostgreSQL error, or "".
func Code(err error) string { return pgCode(err) }

// MapError translates what the database said into Tani's error vocabulary:
// no rows become NotFound and a unique violation a Conflict, each with the
// client-safe message given; anything else is returned unchanged.
func MapError(err error, notFound, conflict string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return apperr.Wrap(apperr.NotFound, err, "%s", notFound)
	case pgCode(err) == CodeUniqueViolation:
		return apperr.Wrap(apperr.Conflict, err, "%s", conflict)
	}
	return err
}
