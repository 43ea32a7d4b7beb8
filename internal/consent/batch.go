package consent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/identity"
)

// refusedCode is the SQLSTATE of consent.refuse_read: the check of a
// ReadBatch found no live consent.
const refusedCode = "TG403"

// checkAndLog finds the live consent ($1 farmer, $2 organization, $3
// scopes, $4 now) and writes the allowed access-log row ($5 credential,
// $6 purpose, $7 request id) in one statement, or, when there is none,
// aborts the transaction (consent.refuse_read) so that nothing queued
// behind it runs. A data-modifying CTE runs whether or not the outer
// query reads it; the failing branch's function is only called when its
// one-time filter passes, that is when no consent was found.
var checkAndLog = `
	WITH g AS (
	    SELECT consent_id, scopes, expires_at, granted_record_id FROM ingest.consent_grants c
	    WHERE farmer_id = $1 AND grantee_org_id = $2 AND ` + LiveSQL("c", "$4") + ` AND scopes @> $3
	    ORDER BY expires_at DESC LIMIT 1
	), logged AS (
	    INSERT INTO consent.access_log (organization_id, credential, farmer_id, scopes, purpose, request_id, allowed, consent_id, granted_record_id)
	    SELECT $2, $5, $1, $3, $6, $7, true, consent_id, granted_record_id FROM g
	)
	SELECT consent_id::text, scopes, expires_at, granted_record_id::text FROM g
	UNION ALL
	SELECT consent.refuse_read(), NULL, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM g)`

// ReadBatch is Read for a read whose queries need nothing but the farmer
// id: queue puts them on b with the functions that take their results,
// and they go to Postgres in the round trip that begins the transaction
// and checks the consent, right behind the check. They run only if it
// passes: a denial aborts the transaction in the database before any of
// them runs, so that no row of the farmer leaves Postgres, and is then
// logged and answered exactly as Read does (Denied, a denied row).
//
// then, when not nil, runs once the results are in, with the grant; it
// may queue on finish the writes that go with the read (a score computed
// from it), which are sent with the COMMIT in a second and last round
// trip. An error from then rolls everything back, access-log row
// included. Without then, the COMMIT goes in the first round trip too: the
// whole gated read is one round trip. The result functions run after the
// statements did, so their own errors (a scan that fails) come back after
// that COMMIT: the access is then logged, since the rows did reach this
// process.
//
// It costs one or two round trips where Read costs three or more (begin
// and check, each of the read's, the commit); the access-log row is as
// durable as Read's (WithDurableLog).
func (g *Gate) ReadBatch(ctx context.Context, p identity.Principal, a Access, queue func(b *pgx.Batch), then func(ctx context.Context, grant Grant, finish *pgx.Batch) error) (Grant, error) {
	if err := checkAccess(p, a); err != nil {
		return Grant{}, err
	}
	scopes := scopeStrings(a.Scopes)
	if p.APIKeyID != "" {
		for _, s := range scopes {
			if !slices.Contains(p.Scopes, s) {
				return Grant{}, g.deny(ctx, p, a, fmt.Sprintf("the API key is not scoped for %s", s))
			}
		}
	}
	conn, err := g.pool.Acquire(ctx)
	if err != nil {
		return Grant{}, fmt.Errorf("consent of farmer %s: %w", a.FarmerID, err)
	}
	// A connection left inside a transaction (a failure below) is
	// destroyed on release, never reused.
	defer conn.Release()
	rollback := func() { conn.Exec(context.WithoutCancel(ctx), "ROLLBACK") }
	commit := func(b *pgx.Batch) {
		b.Queue("COMMIT").Exec(func(tag pgconn.CommandTag) error {
			if tag.String() == "ROLLBACK" { // the transaction had failed
				return pgx.ErrTxCommitRollback
			}
			return nil
		})
	}

	var grant Grant
	var granted []string
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	if a.ReadOnly && !g.durable {
		b.Queue(`SET LOCAL synchronous_commit = off`)
	}
	b.Queue(checkAndLog, a.FarmerID, p.OrganizationID, scopes, g.now(), p.Credential(), a.Purpose, a.RequestID).
		QueryRow(func(row pgx.Row) error {
			return row.Scan(&grant.ConsentID, &granted, &grant.ExpiresAt, &grant.GrantedRecordID)
		})
	if a.ReadOnly {
		b.Queue(`SET TRANSACTION READ ONLY`)
	}
	queue(b)
	if then == nil {
		commit(b)
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		rollback()
		if pe, ok := errors.AsType[*pgconn.PgError](err); ok && pe.Code == refusedCode {
			return Grant{}, g.deny(ctx, p, a, "no live consent covering "+strings.Join(scopes, ", "))
		}
		return Grant{}, fmt.Errorf("gated read of farmer %s: %w", a.FarmerID, err)
	}
	for _, s := range granted {
		grant.Scopes = append(grant.Scopes, Scope(s))
	}
	if then == nil {
		return grant, nil
	}
	finish := &pgx.Batch{}
	if err := then(ctx, grant, finish); err != nil {
		rollback()
		return Grant{}, err
	}
	commit(finish)
	if err := conn.SendBatch(ctx, finish).Close(); err != nil {
		rollback()
		return Grant{}, fmt.Errorf("gated read of farmer %s: %w", a.FarmerID, err)
	}
	return grant, nil
}

// ReadBatchFor is ReadBatch for an echo handler behind identity's
// Require: the principal and the request id come from the request.
func (g *Gate) ReadBatchFor(c echo.Context, farmerID string, scopes []Scope, purpose string, queue func(b *pgx.Batch), then func(ctx context.Context, grant Grant, finish *pgx.Batch) error) (Grant, error) {
	p, ok := identity.PrincipalOf(c)
	if !ok {
		return Grant{}, apperr.Errorf(apperr.Unauthorized, "no authenticated organization")
	}
	a := Access{FarmerID: farmerID, Scopes: scopes, Purpose: purpose, RequestID: c.Response().Header().Get(echo.HeaderXRequestID)}
	return g.ReadBatch(c.Request().Context(), p, a, queue, then)
}
