package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
)

// apply writes the normalized effect of freshly stored records in tx (one
// pipelined batch, then the events' COPYs), and returns the records that
// turned out to conflict (their effects must then be rolled back with
// their submissions). Every statement is idempotent on the record id, so
// a redelivered message changes nothing. Farmers and plots follow the
// newest capture: an older edit synced late from an offline phone never
// overwrites a newer one.
//
// Events (plantings, inputs, harvests, sales) only ever insert, so each
// kind is one binary COPY after the batch's other statements (see
// inserts.store); farmer and consent statements depend on rows earlier
// records of the same batch may have written, so they run one per
// record, in stream order. Plots are upserted in rounds, each one
// multi-row statement holding at most one record of a plot (Postgres
// spent several times more on a one-row statement's round trip, planning
// and executor start than on the row itself): the first round has the
// first record of every plot in the batch, the second the second record
// of every plot that has one, and so on. A plot's upsert reads and writes
// nothing but that plot's row, and no other statement reads plots, so
// running the rounds before the batch's other statements applies each
// plot's records in stream order, as one statement per record did.
func (s *Service) apply(ctx context.Context, tx pgx.Tx, fresh []*item) ([]*item, error) {
	b := &pgx.Batch{}
	var ev inserts
	var kept []*item // plot upserts that changed nothing: older capture, or another farmer's plot
	var rounds []plotRows
	seen := map[string]int{} // records of each plot so far
	for _, it := range fresh {
		if p, ok := it.payload.(*record.PlotMapped); ok {
			round := seen[p.PlotID]
			seen[p.PlotID]++
			if round == len(rounds) {
				rounds = append(rounds, plotRows{})
			}
			rounds[round].add(it, p)
		}
	}
	for i := range rounds {
		rounds[i].queue(b, &kept)
	}
	for _, it := range fresh {
		if _, ok := it.payload.(*record.PlotMapped); ok {
			continue
		}
		if err := s.queue(b, &ev, it); err != nil {
			return nil, err
		}
	}
	ev.queueLoans(b)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("apply %d records: %w", len(fresh), err)
	}
	if err := ev.store(ctx, tx); err != nil {
		return nil, err
	}
	if err := consentEvents(ctx, tx, fresh); err != nil {
		return nil, err
	}
	if len(kept) == 0 {
		return nil, nil
	}
	keptPlots := make([]string, len(kept))
	for i, it := range kept {
		keptPlots[i] = it.payload.(*record.PlotMapped).PlotID
	}
	rows, err := tx.Query(ctx, `SELECT plot_id::text, farmer_id::text FROM ingest.plots WHERE plot_id = ANY($1::text[]::uuid[])`, keptPlots)
	if err != nil {
		return nil, fmt.Errorf("load plots: %w", err)
	}
	owners, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var p [2]string
		return p, r.Scan(&p[0], &p[1])
	})
	if err != nil {
		return nil, fmt.Errorf("load plots: %w", err)
	}
	owner := map[string]string{}
	for _, p := range owners {
		owner[p[0]] = p[1]
	}
	var conflicts []*item
	for _, it := range kept {
		p := it.payload.(*record.PlotMapped)
		if owner[p.PlotID] != p.FarmerID {
			it.err = apperr.Errorf(apperr.Conflict, "plot %s belongs to another farmer", p.PlotID)
			conflicts = append(conflicts, it)
		}
	}
	return conflicts, nil
}

// queue adds the statements of one record other than a plot to b, or its
// row to ev.
func (s *Service) queue(b *pgx.Batch, ev *inserts, it *item) error {
	env, captured := it.env, it.env.Captured()
	switch p := it.payload.(type) {
	case *record.FarmerRegistered:
		var photo *string
		if p.PhotoHash != "" {
			photo = &p.PhotoHash
		}
		b.Queue(`
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
			p.Village, p.Gender, p.BirthYear, photo, it.agentID, env.ID, captured)
	case *record.PlotMapped:
		return fmt.Errorf("record %s: plots are upserted in apply's rounds, not one by one", env.ID)
	case *record.CropPlanted:
		ev.crops.add(env.ID, p.FarmerID, p.PlotID, p.CropCode, p.Variety, p.PlantedOn, p.ExpectedHarvestOn)
	case *record.InputApplied:
		qty, unit := p.Quantity.Normalized()
		ev.inputs.add(env.ID, p.FarmerID, p.PlotID, p.Product, p.Category, qty, unit, p.AppliedOn)
	case *record.HarvestRecorded:
		kg, _ := p.Quantity.Kg()
		ev.harvests.add(env.ID, p.FarmerID, p.PlotID, p.CropCode, kg, p.QualityGrade, p.HarvestedOn)
	case *record.SaleRecorded:
		kg, _ := p.Quantity.Kg()
		ev.sales.add(env.ID, p.FarmerID, p.Buyer, p.CropCode, kg, p.Price.Amount, p.Price.Currency, p.SoldOn)
	case *record.ConsentGranted:
		expires, _ := time.Parse(time.RFC3339, p.ExpiresAt)
		// A revocation synced before its grant (offline phones) is already
		// in submissions: the grant starts out revoked.
		//
		// Every parameter is typed where it is first met: Postgres infers
		// an untyped parameter's type from its first use, and a bare $1
		// in the select list compared as text below would be inserted as
		// text into a uuid column (SQLSTATE 42804). The payload's ids are
		// compared in canonical (lowercase) form.
		b.Queue(`
			INSERT INTO ingest.consents (consent_id, farmer_id, grantee_org_id, scopes, expires_at, granted_record_id, granted_at,
			                             revoked_at, revoked_record_id, revoke_reason)
			SELECT $1::uuid, $2::uuid, $3::uuid, $4::text[], $5::timestamptz, $6::uuid, $7::timestamptz,
			       r.captured_at, r.id, nullif(r.payload->>'reason', '')
			FROM (SELECT 1) AS one
			LEFT JOIN LATERAL (
			    SELECT id, captured_at, payload FROM ingest.submissions
			    WHERE type = 'consent.revoked'
			      AND lower(payload->>'consent_id') = $1::uuid::text AND lower(payload->>'farmer_id') = $2::uuid::text
			    ORDER BY captured_at LIMIT 1) AS r ON true
			ON CONFLICT DO NOTHING`,
			p.ConsentID, p.FarmerID, p.GranteeOrgID, p.Scopes, expires, env.ID, captured)
	case *record.ConsentRevoked:
		// Keep the earliest revocation of an existing grant; a grant that
		// arrives later picks this one up from submissions.
		b.Queue(`
			UPDATE ingest.consents SET revoked_at = $3, revoked_record_id = $4, revoke_reason = nullif($5, '')
			WHERE consent_id = $1 AND farmer_id = $2 AND (revoked_at IS NULL OR revoked_at > $3)`,
			p.ConsentID, p.FarmerID, captured, env.ID, p.Reason)
	case *record.ConsentRefused:
		// No table of its own: ingest.consent_refusals is a view over
		// submissions, where the record is already stored.
	case *record.LoanApplied:
		ev.loans.add(env.ID, string(env.Type), p.FarmerID, p.LoanID, it.agentID, captured)
		ev.loans.applied(p.ProductID, p.Amount.Amount, p.Amount.Currency, p.Purpose)
	case *record.LoanAccepted:
		ev.loans.add(env.ID, string(env.Type), p.FarmerID, p.LoanID, it.agentID, captured)
		ev.loans.accepted(p.TermsSHA256)
	case *record.RepaymentCollected:
		ev.loans.add(env.ID, string(env.Type), p.FarmerID, p.LoanID, it.agentID, captured)
		ev.loans.collected(p.Amount.Amount, p.Amount.Currency, p.PayerReference, p.CollectedOn)
	case *record.OrderPlaced, *record.DeliveryConfirmed:
		// Marketplace records have no domain table here: the marketplace
		// projects them once attest verified them (submissions keep the
		// record itself).
	default:
		return fmt.Errorf("no domain table for %T", it.payload)
	}
	return nil
}

// plotRows are plot.mapped records, at most one of each plot, column by
// column: one round of apply's plot upserts.
type plotRows struct {
	items                                              []*item
	ids, farmers, boundaries, tenures, agents, records []string
	declared, accuracy                                 []float64
	mock                                               []bool
	captured                                           []time.Time
}

func (r *plotRows) add(it *item, p *record.PlotMapped) {
	declared, _ := p.DeclaredArea.Ha()
	r.items = append(r.items, it)
	r.ids, r.farmers, r.boundaries, r.tenures = append(r.ids, p.PlotID), append(r.farmers, p.FarmerID), append(r.boundaries, p.Boundary.WKT()), append(r.tenures, p.Tenure)
	r.agents, r.records, r.captured = append(r.agents, it.agentID), append(r.records, it.env.ID), append(r.captured, it.env.Captured())
	r.declared, r.accuracy, r.mock = append(r.declared, declared), append(r.accuracy, p.GPSAccuracyM), append(r.mock, p.MockLocation)
}

// queue adds the upsert of r's plots; those it changes nothing for (a
// newer capture is stored, or the plot is another farmer's) are added to
// kept, for apply to tell the two apart.
func (r *plotRows) queue(b *pgx.Batch, kept *[]*item) {
	if len(r.items) == 0 {
		return
	}
	b.Queue(`
		INSERT INTO ingest.plots AS pl (plot_id, farmer_id, boundary, area_ha, declared_area_ha, tenure, gps_accuracy_m,
		                                mock_location, agent_id, record_id, captured_at)
		SELECT r.plot, r.farmer, g, ST_Area(g) / 10000, r.declared, r.tenure, r.accuracy, r.mock, r.agent, r.record, r.captured
		FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[], $4::float8[], $5::text[], $6::float8[], $7::bool[],
		            $8::text[]::uuid[], $9::text[]::uuid[], $10::timestamptz[])
		    AS r(plot, farmer, boundary, declared, tenure, accuracy, mock, agent, record, captured)
		CROSS JOIN LATERAL ST_GeogFromText('SRID=4326;' || r.boundary) AS g
		ON CONFLICT (plot_id) DO UPDATE SET
		    boundary = excluded.boundary, area_ha = excluded.area_ha, declared_area_ha = excluded.declared_area_ha,
		    tenure = excluded.tenure, gps_accuracy_m = excluded.gps_accuracy_m, mock_location = excluded.mock_location,
		    agent_id = excluded.agent_id, record_id = excluded.record_id, captured_at = excluded.captured_at,
		    revisions = pl.revisions + 1, change_seq = nextval('ingest.change_seq'), updated_at = now()
		WHERE pl.captured_at < excluded.captured_at AND pl.farmer_id = excluded.farmer_id
		RETURNING plot_id::text`,
		r.ids, r.farmers, r.boundaries, r.declared, r.tenures, r.accuracy, r.mock, r.agents, r.records, r.captured,
	).Query(func(rows pgx.Rows) error {
		changed := map[string]bool{}
		var id string
		if _, err := pgx.ForEachRow(rows, []any{&id}, func() error { changed[id] = true; return nil }); err != nil {
			return fmt.Errorf("upsert %d plots: %w", len(r.items), err)
		}
		for i, it := range r.items {
			if !changed[r.ids[i]] {
				*kept = append(*kept, it)
			}
		}
		return nil
	})
}

// inserts collects the insert-only records of a batch, column by column,
// so that each kind is stored by one statement however big the batch.
type inserts struct {
	crops    cropRows
	inputs   inputRows
	harvests harvestRows
	sales    saleRows
	loans    loanRows
}

// loanRows are loan records: the common columns with add, then the
// type's own with applied, accepted or collected (the others NULL).
type loanRows struct {
	ids, types, farmers, loans, agents                             []string
	captured                                                       []time.Time
	products, currencies, purposes, terms, references, collectedOn []*string
	amounts                                                        []*int64
}

func (r *loanRows) add(id, typ, farmer, loan, agent string, captured time.Time) {
	r.ids, r.types, r.farmers, r.loans, r.agents = append(r.ids, id), append(r.types, typ), append(r.farmers, farmer), append(r.loans, loan), append(r.agents, agent)
	r.captured = append(r.captured, captured)
}

func (r *loanRows) row(product *string, amount *int64, currency, purpose, terms, reference, collected *string) {
	r.products, r.amounts, r.currencies, r.purposes = append(r.products, product), append(r.amounts, amount), append(r.currencies, currency), append(r.purposes, purpose)
	r.terms, r.references, r.collectedOn = append(r.terms, terms), append(r.references, reference), append(r.collectedOn, collected)
}

func (r *loanRows) applied(product string, amount int64, currency, purpose string) {
	r.row(&product, &amount, &currency, &purpose, nil, nil, nil)
}

func (r *loanRows) accepted(terms string) { r.row(nil, nil, nil, nil, &terms, nil, nil) }

func (r *loanRows) collected(amount int64, currency, reference, on string) {
	r.row(nil, &amount, &currency, nil, nil, &reference, &on)
}

type cropRows struct{ ids, farmers, plots, crops, varieties, planted, expected []string }

func (r *cropRows) add(id, farmer, plot, crop, variety, planted, expected string) {
	r.ids, r.farmers, r.plots = append(r.ids, id), append(r.farmers, farmer), append(r.plots, plot)
	r.crops, r.varieties = append(r.crops, crop), append(r.varieties, variety)
	r.planted, r.expected = append(r.planted, planted), append(r.expected, expected)
}

type inputRows struct {
	ids, farmers, plots, products, categories, units, applied []string
	quantities                                                []float64
}

func (r *inputRows) add(id, farmer, plot, product, category string, qty float64, unit, applied string) {
	r.ids, r.farmers, r.plots = append(r.ids, id), append(r.farmers, farmer), append(r.plots, plot)
	r.products, r.categories = append(r.products, product), append(r.categories, category)
	r.quantities, r.units, r.applied = append(r.quantities, qty), append(r.units, unit), append(r.applied, applied)
}

type harvestRows struct {
	ids, farmers, plots, crops, grades, harvested []string
	kg                                            []float64
}

func (r *harvestRows) add(id, farmer, plot, crop string, kg float64, grade, harvested string) {
	r.ids, r.farmers, r.plots = append(r.ids, id), append(r.farmers, farmer), append(r.plots, plot)
	r.crops, r.kg, r.grades, r.harvested = append(r.crops, crop), append(r.kg, kg), append(r.grades, grade), append(r.harvested, harvested)
}

type saleRows struct {
	ids, farmers, buyers, crops, currencies, sold []string
	kg                                            []float64
	prices                                        []int64
}

func (r *saleRows) add(id, farmer, buyer, crop string, kg float64, price int64, currency, sold string) {
	r.ids, r.farmers, r.buyers, r.crops = append(r.ids, id), append(r.farmers, farmer), append(r.buyers, buyer), append(r.crops, crop)
	r.kg, r.prices, r.currencies, r.sold = append(r.kg, kg), append(r.prices, price), append(r.currencies, currency), append(r.sold, sold)
}

// store writes the events of fresh records: one binary COPY per kind,
// all under one savepoint (postgres.CopyNewTables). A fresh record has no
// event row yet (its submission was new in this transaction), so the
// COPYs almost always go in, and they cost Postgres a fraction of an
// INSERT … ON CONFLICT from text arrays (no speculative insertion, no
// array parsing) and pgx no text encoding. Should one meet a row of the
// same record anyway, all are rolled back to the savepoint and the events
// take the INSERT … ON CONFLICT DO NOTHING statements instead, which keep
// what is there.
func (ev *inserts) store(ctx context.Context, tx pgx.Tx) error {
	copies, err := ev.copies()
	if err != nil || len(copies) == 0 {
		return err
	}
	switch err := postgres.CopyNewTables(ctx, tx, copies...); {
	case err == nil:
		return nil
	case postgres.Code(err) != postgres.CodeUniqueViolation:
		return err
	}
	b := &pgx.Batch{}
	ev.queue(b)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}

// copies returns the COPYs of the events, a kind with no rows left out.
// Ids go as [16]byte (pgx's uuid binary form without a text round trip)
// and dates as time.Time; both were checked with the record.
func (ev *inserts) copies() ([]postgres.TableRows, error) {
	var out []postgres.TableRows
	var errs []error
	id := func(s string) [16]byte {
		u, err := uuid.Parse(s)
		if err != nil {
			errs = append(errs, err)
		}
		return u
	}
	day := func(s string) time.Time {
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			errs = append(errs, err)
		}
		return t
	}
	if c := ev.crops; len(c.ids) > 0 {
		rows := make([][]any, len(c.ids))
		for i := range rows {
			var variety *string
			if c.varieties[i] != "" {
				variety = &c.varieties[i]
			}
			rows[i] = []any{id(c.ids[i]), id(c.farmers[i]), id(c.plots[i]), c.crops[i], variety, day(c.planted[i]), day(c.expected[i])}
		}
		out = append(out, eventTable("crop_cycles", []string{"record_id", "farmer_id", "plot_id", "crop", "variety", "planted_on", "expected_harvest_on"}, rows))
	}
	if in := ev.inputs; len(in.ids) > 0 {
		rows := make([][]any, len(in.ids))
		for i := range rows {
			rows[i] = []any{id(in.ids[i]), id(in.farmers[i]), id(in.plots[i]), in.products[i], in.categories[i], in.quantities[i], in.units[i], day(in.applied[i])}
		}
		out = append(out, eventTable("input_applications", []string{"record_id", "farmer_id", "plot_id", "product", "category", "quantity", "unit", "applied_on"}, rows))
	}
	if h := ev.harvests; len(h.ids) > 0 {
		rows := make([][]any, len(h.ids))
		for i := range rows {
			rows[i] = []any{id(h.ids[i]), id(h.farmers[i]), id(h.plots[i]), h.crops[i], h.kg[i], h.grades[i], day(h.harvested[i])}
		}
		out = append(out, eventTable("harvests", []string{"record_id", "farmer_id", "plot_id", "crop", "quantity_kg", "quality_grade", "harvested_on"}, rows))
	}
	if sl := ev.sales; len(sl.ids) > 0 {
		rows := make([][]any, len(sl.ids))
		for i := range rows {
			rows[i] = []any{id(sl.ids[i]), id(sl.farmers[i]), sl.buyers[i], sl.crops[i], sl.kg[i], sl.prices[i], sl.currencies[i], day(sl.sold[i])}
		}
		out = append(out, eventTable("sales", []string{"record_id", "farmer_id", "buyer", "crop", "quantity_kg", "price_minor", "currency", "sold_on"}, rows))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return out, nil
}

// eventTable is the rows of one kind of event, for ingest's table name.
func eventTable(name string, columns []string, rows [][]any) postgres.TableRows {
	return postgres.TableRows{Table: pgx.Identifier{"ingest", name}, Columns: columns, Rows: rows}
}

// queue adds one INSERT … ON CONFLICT DO NOTHING per kind of event that
// has rows: what store falls back to.
func (ev *inserts) queue(b *pgx.Batch) {
	if c := ev.crops; len(c.ids) > 0 {
		b.Queue(`
			INSERT INTO ingest.crop_cycles (record_id, farmer_id, plot_id, crop, variety, planted_on, expected_harvest_on)
			SELECT id, farmer, plot, crop, nullif(variety, ''), planted, expected
			FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[]::uuid[], $4::text[], $5::text[], $6::text[]::date[], $7::text[]::date[])
			    AS r(id, farmer, plot, crop, variety, planted, expected)
			ON CONFLICT DO NOTHING`,
			c.ids, c.farmers, c.plots, c.crops, c.varieties, c.planted, c.expected)
	}
	if in := ev.inputs; len(in.ids) > 0 {
		b.Queue(`
			INSERT INTO ingest.input_applications (record_id, farmer_id, plot_id, product, category, quantity, unit, applied_on)
			SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[]::uuid[], $4::text[], $5::text[], $6::float8[], $7::text[], $8::text[]::date[])
			ON CONFLICT DO NOTHING`,
			in.ids, in.farmers, in.plots, in.products, in.categories, in.quantities, in.units, in.applied)
	}
	if h := ev.harvests; len(h.ids) > 0 {
		b.Queue(`
			INSERT INTO ingest.harvests (record_id, farmer_id, plot_id, crop, quantity_kg, quality_grade, harvested_on)
			SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[]::uuid[], $4::text[], $5::float8[], $6::text[], $7::text[]::date[])
			ON CONFLICT DO NOTHING`,
			h.ids, h.farmers, h.plots, h.crops, h.kg, h.grades, h.harvested)
	}
	if sl := ev.sales; len(sl.ids) > 0 {
		b.Queue(`
			INSERT INTO ingest.sales (record_id, farmer_id, buyer, crop, quantity_kg, price_minor, currency, sold_on)
			SELECT * FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[], $4::text[], $5::float8[], $6::bigint[], $7::text[], $8::text[]::date[])
			ON CONFLICT DO NOTHING`,
			sl.ids, sl.farmers, sl.buyers, sl.crops, sl.kg, sl.prices, sl.currencies, sl.sold)
	}
}

// queueLoans adds the loan records' insert. They are few, and their
// columns differ by type, so they stay an INSERT in apply's batch.
func (ev *inserts) queueLoans(b *pgx.Batch) {
	if l := ev.loans; len(l.ids) > 0 {
		b.Queue(`
			INSERT INTO ingest.loan_records (record_id, type, farmer_id, loan_id, agent_id, captured_at, product_id, amount_minor, currency,
			                                 purpose, terms_sha256, payer_reference, collected_on)
			SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[], $6::timestamptz[], $7::uuid[], $8::bigint[],
			                     $9::text[], $10::text[], $11::text[], $12::text[], $13::date[])
			ON CONFLICT DO NOTHING`,
			l.ids, l.types, l.farmers, l.loans, l.agents, l.captured, l.products, l.amounts, l.currencies, l.purposes, l.terms, l.references, l.collectedOn)
	}
}
