package consent

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// Migrations is the consent schema.
var Migrations = postgres.Migrations{Name: "consent", FS: postgres.MustSub(migrationsFS, "migrations")}

// Scope is a kind of farmer data a consent covers (validate.ConsentScopes).
type Scope string

// The scopes.
const (
	Identity Scope = "identity"
	Plots    Scope = "plots"
	Crops    Scope = "crops"
	Inputs   Scope = "inputs"
	Harvests Scope = "harvests"
	Sales    Scope = "sales"
	Credit   Scope = "credit" // the farmer's score and loans
	Orders   Scope = "orders" // the farmer's input orders and deliveries
)

// MaxPurpose is the longest purpose a read may state.
const MaxPurpose = 200

// Access is one read of one farmer's data.
type Access struct {
	FarmerID string
	Scopes   []Scope
	// Purpose says why, in the caller's terms ("credit profile"): the
	// farmer sees it in their access log.
	Purpose   string
	RequestID string
	// ReadOnly says the read only reads (a profile, a record's history):
	// after its access-log row the transaction is made read-only (a write
	// fails), and so its commit need not wait for the WAL flush (see
	// NewGate). A read that also writes (a loan applied for under the
	// consent) leaves it false and commits durably.
	ReadOnly bool
}

// Grant is the live consent that allowed a read.
type Grant struct {
	ConsentID string
	Scopes    []Scope
	ExpiresAt time.Time
	// GrantedRecordID is the signed consent.granted record: its journal
	// receipt proves the consent was held at the time of the read.
	GrantedRecordID string
}

// Gate is the one gate (see the package doc).
type Gate struct {
	pool    *pgxpool.Pool
	now     func() time.Time
	durable bool
}

// NewGate returns the gate over the primary pool: consent must be read
// where a revocation was just written, never from a lagging replica.
//
// A read-only access (Access.ReadOnly: the transaction writes nothing but
// its access-log row) commits without waiting for its WAL to reach disk
// only when the operator chose latency over the crash-proof log
// (WithDurableLog(false), -consent.durable-access-log=false): the row is
// then atomic with the read, but a crash of the Postgres server itself may
// lose the rows of the last moments (at most 3 × wal_writer_delay). A read
// that writes always commits durably.
func NewGate(pool *pgxpool.Pool) *Gate { return &Gate{pool: pool, now: time.Now, durable: true} }

// WithDurableLog makes every allowed read wait until its access-log row
// is on disk (and on synchronous standbys) before the read is served.
func (g *Gate) WithDurableLog(durable bool) *Gate {
	g.durable = durable
	return g
}

// Denied is the answer to every refused read. It is the same whether the
// farmer exists or not, so that a denial does not reveal who is a Tani
// farmer.
var Denied = apperr.Errorf(apperr.Forbidden, "no live consent of this farmer covers this read for your organization")

// Read runs read in a transaction after checking that the farmer holds a
// live consent naming p's organization and covering every scope of a (and,
// for an API key, that the key's own scopes cover them), and logging the
// access in that transaction. read must do all its reading through tx.
// A denial logs a denied row and returns Denied; an error from read rolls
// the access-log row back with the read.
func (g *Gate) Read(ctx context.Context, p identity.Principal, a Access, read func(ctx context.Context, tx pgx.Tx, grant Grant) error) error {
	if err := checkAccess(p, a); err != nil {
		return err
	}
	scopes := scopeStrings(a.Scopes)
	if p.APIKeyID != "" {
		for _, s := range scopes {
			if !slices.Contains(p.Scopes, s) {
				return g.deny(ctx, p, a, fmt.Sprintf("the API key is not scoped for %s", s))
			}
		}
	}
	conn, err := g.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("consent of farmer %s: %w", a.FarmerID, err)
	}
	// A connection left inside a transaction (a failure below) is
	// destroyed on release, never reused.
	defer conn.Release()
	// One round trip begins the transaction, finds the live consent and
	// logs the access.
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	if a.ReadOnly && !g.durable {
		b.Queue(`SET LOCAL synchronous_commit = off`)
	}
	var grant Grant
	var granted []string
	found := false
	b.Queue(`
		WITH g AS (
		    SELECT consent_id, scopes, expires_at, granted_record_id FROM ingest.consent_grants c
		    WHERE farmer_id = $1 AND grantee_org_id = $2 AND `+LiveSQL("c", "$4")+` AND scopes @> $3
		    ORDER BY expires_at DESC LIMIT 1
		), logged AS (
		    INSERT INTO consent.access_log (organization_id, credential, farmer_id, scopes, purpose, request_id, allowed, consent_id, granted_record_id)
		    SELECT $2, $5, $1, $3, $6, $7, true, consent_id, granted_record_id FROM g
		)
		SELECT consent_id::text, scopes, expires_at, granted_record_id::text FROM g`,
		a.FarmerID, p.OrganizationID, scopes, g.now(), p.Credential(), a.Purpose, a.RequestID).
		QueryRow(func(row pgx.Row) error {
			err := row.Scan(&grant.ConsentID, &granted, &grant.ExpiresAt, &grant.GrantedRecordID)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			found = err == nil
			return err
		})
	if a.ReadOnly {
		b.Queue(`SET TRANSACTION READ ONLY`)
	}
	tx := &pipelinedTx{conn: conn.Conn()}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		tx.Rollback(ctx)
		return fmt.Errorf("consent of farmer %s: %w", a.FarmerID, err)
	}
	if !found {
		if err := tx.Rollback(ctx); err != nil {
			return err
		}
		return g.deny(ctx, p, a, "no live consent covering "+strings.Join(scopes, ", "))
	}
	for _, s := range granted {
		grant.Scopes = append(grant.Scopes, Scope(s))
	}
	if err := read(ctx, tx, grant); err != nil {
		tx.Rollback(ctx)
		return err
	}
	return tx.Commit(ctx)
}

// LiveSQL is the rule that a consent is live, as a SQL condition on the
// row alias of ingest.consent_grants at the time expression now: not
// expired and not revoked. Every check of a live consent (Read, Allows,
// the webhooks' fan-out and polling, which decide in bulk inside their
// own statements) uses it, so the rule is stated once.
func LiveSQL(alias, now string) string {
	return alias + ".expires_at > " + now + " AND (" + alias + ".revoked_at IS NULL OR " + alias + ".revoked_at > " + now + ")"
}

// Check is one question for AllowsAll: does organization OrganizationID
// hold a live consent of FarmerID covering Scope?
type Check struct {
	OrganizationID string
	FarmerID       string
	Scope          Scope
}

// Allows reports whether organization orgID holds a live consent of
// farmerID covering scope, now, on the primary. Unlike Read it logs
// nothing and reads no data: it is for deciding whether to tell an
// organization that something happened (webhooks re-check it before every
// delivery attempt), never for serving a farmer's data.
func (g *Gate) Allows(ctx context.Context, orgID, farmerID string, scope Scope) (bool, error) {
	ok, err := g.AllowsAll(ctx, []Check{{OrganizationID: orgID, FarmerID: farmerID, Scope: scope}})
	if err != nil {
		return false, err
	}
	return ok[0], nil
}

// AllowsAll is Allows for many checks in one query; the answers are in
// the order of checks. A malformed check (not UUIDs, an unknown scope) is
// answered false.
func (g *Gate) AllowsAll(ctx context.Context, checks []Check) ([]bool, error) {
	out := make([]bool, len(checks))
	var orgs, farmers, scopes []string
	var at []int
	for i, c := range checks {
		if validate.LowerUUID(c.OrganizationID) && validate.LowerUUID(c.FarmerID) && slices.Contains(validate.ConsentScopes, string(c.Scope)) {
			orgs, farmers, scopes, at = append(orgs, c.OrganizationID), append(farmers, c.FarmerID), append(scopes, string(c.Scope)), append(at, i)
		}
	}
	if len(at) == 0 {
		return out, nil
	}
	rows, err := g.pool.Query(ctx, `
		SELECT q.i FROM unnest($1::uuid[], $2::uuid[], $3::text[]) WITH ORDINALITY AS q(org, farmer, scope, i)
		WHERE EXISTS (SELECT 1 FROM ingest.consent_grants c
		              WHERE c.farmer_id = q.farmer AND c.grantee_org_id = q.org AND `+LiveSQL("c", "$4")+` AND c.scopes @> ARRAY[q.scope])`,
		orgs, farmers, scopes, g.now())
	if err != nil {
		return nil, fmt.Errorf("check %d consents: %w", len(at), err)
	}
	allowed, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("check %d consents: %w", len(at), err)
	}
	for _, i := range allowed {
		out[at[i-1]] = true
	}
	return out, nil
}

// ReadFor is Read for an echo handler behind identity's Require: the
// principal and the request id come from the request.
func (g *Gate) ReadFor(c echo.Context, farmerID string, scopes []Scope, purpose string, read func(ctx context.Context, tx pgx.Tx, grant Grant) error) error {
	p, ok := identity.PrincipalOf(c)
	if !ok {
		return apperr.Errorf(apperr.Unauthorized, "no authenticated organization")
	}
	a := Access{FarmerID: farmerID, Scopes: scopes, Purpose: purpose, RequestID: c.Response().Header().Get(echo.HeaderXRequestID)}
	return g.Read(c.Request().Context(), p, a, read)
}

// deny logs a denied read and returns Denied.
func (g *Gate) deny(ctx context.Context, p identity.Principal, a Access, reason string) error {
	_, err := g.pool.Exec(ctx, `
		INSERT INTO consent.access_log (organization_id, credential, farmer_id, scopes, purpose, request_id, allowed, reason)
		VALUES ($1, $2, $3, $4, $5, $6, false, $7)`,
		p.OrganizationID, p.Credential(), a.FarmerID, scopeStrings(a.Scopes), a.Purpose, a.RequestID, reason)
	if err != nil {
		return fmt.Errorf("log denied access to farmer %s: %w", a.FarmerID, err)
	}
	return Denied
}

// checkAccess refuses a read that is malformed before it reaches the
// database: the caller's bug, not a denial.
func checkAccess(p identity.Principal, a Access) error {
	if p.OrganizationID == "" || p.APIKeyID == "" && p.UserID == "" {
		return apperr.Errorf(apperr.Unauthorized, "no authenticated organization")
	}
	if p.Kind != identity.Bank && p.Kind != identity.Distributor {
		return apperr.Errorf(apperr.Forbidden, "only banks and distributors read farmers' data through the consent gate")
	}
	var fields []apperr.FieldError
	if !validate.LowerUUID(a.FarmerID) {
		fields = append(fields, apperr.FieldError{Field: "farmer_id", Message: "must be a lowercase UUID"})
	}
	if len(a.Scopes) == 0 {
		return errors.New("consent: a gated read must name its scopes")
	}
	for _, s := range a.Scopes {
		if !slices.Contains(validate.ConsentScopes, string(s)) {
			return fmt.Errorf("consent: unknown scope %q", s)
		}
	}
	if a.Purpose == "" || len(a.Purpose) > MaxPurpose {
		fields = append(fields, apperr.FieldError{Field: "purpose", Message: fmt.Sprintf("must be 1 to %d characters", MaxPurpose)})
	}
	if len(fields) > 0 {
		return apperr.Fields("bad read", fields...)
	}
	return nil
}

func scopeStrings(scopes []Scope) []string {
	out := make([]string, len(scopes))
	for i, s := range scopes {
		out[i] = string(s)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ScopeOf is the scope a farm record of type t falls under, for reading
// it (its journal history) through the gate. Consent records fall under
// none: they are the farmer's agreements, not their data, and a grantee
// sees its own through GET /consents.
func ScopeOf(t record.Type) (Scope, bool) {
	s, ok := recordScopes[t]
	return s, ok
}

var recordScopes = map[record.Type]Scope{
	record.TypeFarmerRegistered: Identity,
	record.TypePlotMapped:       Plots,
	record.TypeCropPlanted:      Crops,
	record.TypeInputApplied:     Inputs,
	record.TypeHarvestRecorded:  Harvests,
	record.TypeSaleRecorded:     Sales,
}
