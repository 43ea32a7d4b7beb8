package consent

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/validate"
)

// MaxEach is the most farmers one ReadEach reads.
const MaxEach = 5000

// ReadEach is Read for many farmers at once, for work over a whole book (a
// bank re-scoring its borrowers): in one transaction on the primary it
// finds each farmer's live consent naming p's organization and covering
// every scope of a, writes one access-log row per farmer — allowed, naming
// the consent, or denied, with the reason — and runs read with the farmers
// allowed and their grants. A farmer without a live consent is left out of
// the read, never an error; a.FarmerID is ignored. read must do all its
// reading through tx and read only the allowed farmers; an error from read
// rolls every access-log row back with the read.
func (g *Gate) ReadEach(ctx context.Context, p identity.Principal, a Access, farmers []string, read func(ctx context.Context, tx pgx.Tx, allowed map[string]Grant) error) error {
	if len(farmers) == 0 {
		return nil
	}
	probe := a
	probe.FarmerID = farmers[0]
	if err := checkAccess(p, probe); err != nil {
		return err
	}
	if len(farmers) > MaxEach {
		return fmt.Errorf("consent: ReadEach of %d farmers, at most %d", len(farmers), MaxEach)
	}
	for i, f := range farmers {
		if !validate.LowerUUID(f) {
			return apperr.Fields("bad read", apperr.FieldError{Field: fmt.Sprintf("farmer_ids[%d]", i), Message: "must be a lowercase UUID"})
		}
	}
	scopes := scopeStrings(a.Scopes)
	keyDenial := ""
	if p.APIKeyID != "" {
		for _, s := range scopes {
			if !slices.Contains(p.Scopes, s) {
				keyDenial = fmt.Sprintf("the API key is not scoped for %s", s)
				break
			}
		}
	}
	return pgx.BeginFunc(ctx, g.pool, func(tx pgx.Tx) error {
		allowed := map[string]Grant{}
		if keyDenial == "" {
			rows, err := tx.Query(ctx, `
				SELECT DISTINCT ON (farmer_id) farmer_id::text, consent_id::text, scopes, expires_at, granted_record_id::text
				FROM ingest.consent_grants c
				WHERE farmer_id = ANY($1::uuid[]) AND grantee_org_id = $2 AND `+LiveSQL("c", "$4")+` AND scopes @> $3
				ORDER BY farmer_id, expires_at DESC`, farmers, p.OrganizationID, scopes, g.now())
			if err != nil {
				return fmt.Errorf("consents of %d farmers: %w", len(farmers), err)
			}
			for rows.Next() {
				var farmer string
				var gr Grant
				var granted []string
				if err := rows.Scan(&farmer, &gr.ConsentID, &granted, &gr.ExpiresAt, &gr.GrantedRecordID); err != nil {
					rows.Close()
					return fmt.Errorf("consents of %d farmers: %w", len(farmers), err)
				}
				for _, s := range granted {
					gr.Scopes = append(gr.Scopes, Scope(s))
				}
				allowed[farmer] = gr
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("consents of %d farmers: %w", len(farmers), err)
			}
		}
		n := len(farmers)
		ok, consents, records, reasons := make([]bool, n), make([]*string, n), make([]*string, n), make([]*string, n)
		denial := "no live consent covering " + strings.Join(scopes, ", ")
		if keyDenial != "" {
			denial = keyDenial
		}
		for i, f := range farmers {
			if gr, found := allowed[f]; found {
				ok[i], consents[i], records[i] = true, &gr.ConsentID, &gr.GrantedRecordID
			} else {
				reasons[i] = &denial
			}
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO consent.access_log (organization_id, credential, farmer_id, scopes, purpose, request_id, allowed, reason, consent_id, granted_record_id)
			SELECT $1, $2, u.farmer, $3, $4, $5, u.ok, u.reason, u.consent, u.record
			FROM unnest($6::uuid[], $7::bool[], $8::text[], $9::uuid[], $10::uuid[]) AS u(farmer, ok, reason, consent, record)`,
			p.OrganizationID, p.Credential(), scopes, a.Purpose, a.RequestID, farmers, ok, reasons, consents, records); err != nil {
			return fmt.Errorf("log access to %d farmers: %w", n, err)
		}
		return read(ctx, tx, allowed)
	})
}
