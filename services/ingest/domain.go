package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/record"
)

// apply writes a checked record's normalized effect in tx. Every statement
// is idempotent on the record id, so a redelivered message changes nothing.
// Farmers and plots follow the newest capture: an older edit synced late
// from an offline phone never overwrites a newer one.
func (s *Service) apply(ctx context.Context, tx pgx.Tx, env record.Envelope, payload any, agentID string) error {
	captured := env.Captured()
	switch p := payload.(type) {
	case *record.FarmerRegistered:
		var photo *string
		if p.PhotoHash != "" {
			photo = &p.PhotoHash
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO ingest.farmers AS f (farmer_id, name, national_id_hmac, phone_enc, phone_hmac, village, gender, birth_year,
			                                 photo_hash, agent_id, record_id, captured_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
			ON CONFLICT (farmer_id) DO UPDATE SET
			    name = excluded.name, national_id_hmac = excluded.national_id_hmac, phone_enc = excluded.phone_enc,
			    phone_hmac = excluded.phone_hmac, village = excluded.village, gender = excluded.gender,
			    birth_year = excluded.birth_year, photo_hash = excluded.photo_hash, agent_id = excluded.agent_id,
			    record_id = excluded.record_id, captured_at = excluded.captured_at, revisions = f.revisions + 1,
			    change_seq = nextval('ingest.change_seq'), updated_at = now()
			WHERE f.captured_at < excluded.captured_at`,
			p.FarmerID, p.Name, s.pii.NationalIDHash(p.NationalID), s.pii.Encrypt(p.Phone), s.pii.PhoneHash(p.Phone),
			p.Village, p.Gender, p.BirthYear, photo, agentID, env.ID, captured)
		return err
	case *record.PlotMapped:
		declared, _ := p.DeclaredArea.Ha()
		var owner string
		err := tx.QueryRow(ctx, `
			INSERT INTO ingest.plots AS pl (plot_id, farmer_id, boundary, area_ha, declared_area_ha, tenure, gps_accuracy_m,
			                                mock_location, agent_id, record_id, captured_at)
			SELECT $1, $2, g, ST_Area(g) / 10000, $4, $5, $6, $7, $8, $9, $10
			FROM ST_GeogFromText('SRID=4326;' || $3) AS g
			ON CONFLICT (plot_id) DO UPDATE SET
			    boundary = excluded.boundary, area_ha = excluded.area_ha, declared_area_ha = excluded.declared_area_ha,
			    tenure = excluded.tenure, gps_accuracy_m = excluded.gps_accuracy_m, mock_location = excluded.mock_location,
			    agent_id = excluded.agent_id, record_id = excluded.record_id, captured_at = excluded.captured_at,
			    revisions = pl.revisions + 1, change_seq = nextval('ingest.change_seq'), updated_at = now()
			WHERE pl.captured_at < excluded.captured_at AND pl.farmer_id = excluded.farmer_id
			RETURNING farmer_id::text`,
			p.PlotID, p.FarmerID, p.Boundary.WKT(), declared, p.Tenure, p.GPSAccuracyM, p.MockLocation, agentID, env.ID, captured).Scan(&owner)
		if err == pgx.ErrNoRows {
			// Not updated: either a newer capture is already stored (fine)
			// or the plot belongs to another farmer (refused).
			if err := tx.QueryRow(ctx, `SELECT farmer_id::text FROM ingest.plots WHERE plot_id = $1`, p.PlotID).Scan(&owner); err != nil {
				return fmt.Errorf("load plot %s: %w", p.PlotID, err)
			}
			if owner != p.FarmerID {
				return apperr.Errorf(apperr.Conflict, "plot %s belongs to another farmer", p.PlotID)
			}
			return nil
		}
		return err
	case *record.CropPlanted:
		_, err := tx.Exec(ctx, `
			INSERT INTO ingest.crop_cycles (record_id, farmer_id, plot_id, crop, variety, planted_on, expected_harvest_on)
			VALUES ($1, $2, $3, $4, nullif($5, ''), $6, $7) ON CONFLICT DO NOTHING`,
			env.ID, p.FarmerID, p.PlotID, p.Crop, p.Variety, p.PlantedOn, p.ExpectedHarvestOn)
		return err
	case *record.InputApplied:
		qty, unit := p.Quantity.Normalized()
		_, err := tx.Exec(ctx, `
			INSERT INTO ingest.input_applications (record_id, farmer_id, plot_id, product, category, quantity, unit, applied_on)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
			env.ID, p.FarmerID, p.PlotID, p.Product, p.Category, qty, unit, p.AppliedOn)
		return err
	case *record.HarvestRecorded:
		kg, _ := p.Quantity.Kg()
		_, err := tx.Exec(ctx, `
			INSERT INTO ingest.harvests (record_id, farmer_id, plot_id, crop, quantity_kg, quality_grade, harvested_on)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
			env.ID, p.FarmerID, p.PlotID, p.Crop, kg, p.QualityGrade, p.HarvestedOn)
		return err
	case *record.SaleRecorded:
		kg, _ := p.Quantity.Kg()
		_, err := tx.Exec(ctx, `
			INSERT INTO ingest.sales (record_id, farmer_id, buyer, crop, quantity_kg, price_minor, currency, sold_on)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
			env.ID, p.FarmerID, p.Buyer, p.Crop, kg, p.Price.Amount, p.Price.Currency, p.SoldOn)
		return err
	case *record.ConsentGranted:
		expires, _ := time.Parse(time.RFC3339, p.ExpiresAt)
		// A revocation synced before its grant (offline phones) is already
		// in submissions: the grant starts out revoked.
		_, err := tx.Exec(ctx, `
			INSERT INTO ingest.consents (consent_id, farmer_id, grantee_org_id, scopes, expires_at, granted_record_id, granted_at,
			                             revoked_at, revoked_record_id, revoke_reason)
			SELECT $1, $2, $3, $4, $5, $6, $7, r.captured_at, r.id, nullif(r.payload->>'reason', '')
			FROM (SELECT 1) AS one
			LEFT JOIN LATERAL (
			    SELECT id, captured_at, payload FROM ingest.submissions
			    WHERE type = 'consent.revoked' AND payload->>'consent_id' = $1::text AND payload->>'farmer_id' = $2::text
			    ORDER BY captured_at LIMIT 1) AS r ON true
			ON CONFLICT DO NOTHING`,
			p.ConsentID, p.FarmerID, p.GranteeOrgID, p.Scopes, expires, env.ID, captured)
		return err
	case *record.ConsentRevoked:
		// Keep the earliest revocation of an existing grant; a grant that
		// arrives later picks this one up from submissions.
		_, err := tx.Exec(ctx, `
			UPDATE ingest.consents SET revoked_at = $3, revoked_record_id = $4, revoke_reason = nullif($5, '')
			WHERE consent_id = $1 AND farmer_id = $2 AND (revoked_at IS NULL OR revoked_at > $3)`,
			p.ConsentID, p.FarmerID, captured, env.ID, p.Reason)
		return err
	}
	return fmt.Errorf("no domain table for %T", payload)
}
