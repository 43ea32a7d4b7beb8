package lending

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/identity"
)

// servicingLoop runs Service every ServicingInterval until ctx is done.
func (s *Service) servicingLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ServicingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Service(ctx); err != nil && ctx.Err() == nil {
				s.logger.WarnContext(ctx, "servicing pass failed; the next one retries", "err", err)
			}
		}
	}
}

// Service is one servicing pass over the book, as of the service's clock:
// offers past their expiry expire; loans past due with a balance go into
// arrears, and the worst days past due are remembered; restructurings
// are proposed for harvests far below the benchmark and for regional
// shocks; applications waiting for the farmer's consent are decided once
// it is there; journal entries whose first attempt failed are retried.
// Every step is idempotent, so passes may overlap across processes.
func (s *Service) Service(ctx context.Context) error {
	return errors.Join(
		s.expireOffers(ctx),
		s.updateArrears(ctx),
		s.proposeForShortfalls(ctx),
		s.proposeForShocks(ctx),
		s.retryDecisions(ctx),
		s.journalPending(ctx),
	)
}

// eachLoan runs step on each listed loan in its own transaction, locked,
// and journals the events.
func (s *Service) eachLoan(ctx context.Context, ids []string, step func(ctx context.Context, tx pgx.Tx, l *loan) ([]loanEvent, error)) error {
	var errs []error
	for _, id := range ids {
		var evs []loanEvent
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			l, err := lockLoan(ctx, tx, "", id)
			if err != nil {
				return err
			}
			if evs, err = step(ctx, tx, l); err != nil || len(evs) == 0 {
				return err
			}
			return saveLoan(ctx, tx, l)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("loan %s: %w", id, err))
			continue
		}
		s.journalAfter(ctx, evs...)
	}
	return errors.Join(errs...)
}

func (s *Service) ids(ctx context.Context, sql string, args ...any) ([]string, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (s *Service) expireOffers(ctx context.Context) error {
	now := s.now()
	ids, err := s.ids(ctx, `SELECT id::text FROM lending.loans WHERE state = 'offered' AND offer_expires_at <= $1 ORDER BY id`, now)
	if err != nil {
		return fmt.Errorf("offers to expire: %w", err)
	}
	return s.eachLoan(ctx, ids, func(ctx context.Context, tx pgx.Tx, l *loan) ([]loanEvent, error) {
		if l.State != Offered || l.OfferExpiresAt.After(now) {
			return nil, nil
		}
		ev, err := s.transition(ctx, tx, l, move{To: Expired, Actor: "servicing", Reason: "the farmer did not accept before " + l.OfferExpiresAt.UTC().Format(time.RFC3339)})
		return []loanEvent{ev}, err
	})
}

func (s *Service) updateArrears(ctx context.Context) error {
	today := dayOf(s.now())
	// The worst days past due of every loan in arrears, set-based.
	if _, err := s.pool.Exec(ctx, `
		UPDATE lending.loans SET max_dpd = ($1::date - due_on)
		WHERE state IN ('disbursed', 'in_arrears', 'restructured') AND paid < total_due AND due_on < $1::date AND max_dpd < ($1::date - due_on)`, today); err != nil {
		return fmt.Errorf("days past due: %w", err)
	}
	ids, err := s.ids(ctx, `SELECT id::text FROM lending.loans WHERE state IN ('disbursed', 'restructured') AND paid < total_due AND due_on < $1::date ORDER BY id`, today)
	if err != nil {
		return fmt.Errorf("loans falling into arrears: %w", err)
	}
	err = s.eachLoan(ctx, ids, func(ctx context.Context, tx pgx.Tx, l *loan) ([]loanEvent, error) {
		dpd := s.dpd(l)
		if dpd == 0 || l.State == InArrears {
			return nil, nil
		}
		l.MaxDPD = max(l.MaxDPD, dpd)
		ev, err := s.transition(ctx, tx, l, move{To: InArrears, Actor: "servicing", Reason: fmt.Sprintf("%d days past due", dpd),
			Details: map[string]any{"due_on": day(*l.DueOn), "balance": Money{Amount: *l.TotalDue - l.Paid, Currency: l.Currency}, "days_past_due": dpd}})
		return []loanEvent{ev}, err
	})
	// Arrears cleared by a new due date (restructuring) without a
	// restructuring move are cured.
	cured, cerr := s.ids(ctx, `SELECT id::text FROM lending.loans WHERE state = 'in_arrears' AND (paid >= total_due OR due_on >= $1::date) ORDER BY id`, today)
	if cerr != nil {
		return errors.Join(err, fmt.Errorf("cured loans: %w", cerr))
	}
	return errors.Join(err, s.eachLoan(ctx, cured, func(ctx context.Context, tx pgx.Tx, l *loan) ([]loanEvent, error) {
		if l.State != InArrears || s.dpd(l) > 0 || l.Paid >= *l.TotalDue {
			return nil, nil
		}
		to := Disbursed
		if l.Restructured {
			to = Restructured
		}
		ev, err := s.transition(ctx, tx, l, move{To: to, Kind: "loan.cured", Actor: "servicing", Reason: "no longer past due"})
		return []loanEvent{ev}, err
	}))
}

// shortfall is the share of the benchmark yield below which a harvest
// proposes a restructuring, and the extension proposed (one season).
const (
	shortfallRatio     = 0.5
	shortfallExtension = 180
)

// proposeForShortfalls proposes a one-season extension for loans whose
// farmer's verified harvest of the financed crop, since disbursement, came
// in under half the benchmark yield. The harvests are read through the
// consent gate as each bank's servicing (a farmer who revoked is left
// alone).
func (s *Service) proposeForShortfalls(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, `SELECT organization_id::text, array_agg(DISTINCT farmer_id::text) FROM lending.loans
		WHERE state IN ('disbursed', 'in_arrears', 'restructured') GROUP BY organization_id`)
	if err != nil {
		return fmt.Errorf("books to service: %w", err)
	}
	type book struct {
		org     string
		farmers []string
	}
	books, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (book, error) {
		var b book
		return b, r.Scan(&b.org, &b.farmers)
	})
	if err != nil {
		return fmt.Errorf("books to service: %w", err)
	}
	var errs []error
	for _, b := range books {
		p := identity.Principal{OrganizationID: b.org, Kind: identity.Bank, UserID: policyUser}
		for i := 0; i < len(b.farmers); i += consent.MaxEach {
			chunk := b.farmers[i:min(i+consent.MaxEach, len(b.farmers))]
			err := s.gate.ReadEach(ctx, p, consent.Access{Scopes: []consent.Scope{consent.Plots, consent.Harvests, consent.Credit}, Purpose: "loan servicing: harvest shortfall"}, chunk,
				func(ctx context.Context, tx pgx.Tx, allowed map[string]consent.Grant) error {
					ids := make([]string, 0, len(allowed))
					for f := range allowed {
						ids = append(ids, f)
					}
					if len(ids) == 0 {
						return nil
					}
					return s.shortfallProposals(ctx, tx, b.org, ids)
				})
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (s *Service) shortfallProposals(ctx context.Context, tx pgx.Tx, org string, farmers []string) error {
	rows, err := tx.Query(ctx, `
		SELECT l.id::text, l.crop, l.region, h.record_id::text, h.quantity_kg, p.area_ha, h.harvested_on, h.plot_id::text
		FROM lending.loans l
		JOIN ingest.harvest_facts h ON h.farmer_id = l.farmer_id AND h.crop = l.crop AND h.harvested_on >= l.disbursed_at::date
		JOIN attest.evidence e ON e.record_id = h.record_id AND e.status = 'verified'
		JOIN ingest.plot_facts p ON p.plot_id = h.plot_id
		WHERE l.organization_id = $1 AND l.farmer_id = ANY($2::uuid[]) AND l.state IN ('disbursed', 'in_arrears', 'restructured') AND p.area_ha > 0`, org, farmers)
	if err != nil {
		return fmt.Errorf("harvests of loans: %w", err)
	}
	type cand struct {
		loan, crop, region, record, plot string
		kg, area                         float64
		on                               time.Time
	}
	cands, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cand, error) {
		var c cand
		return c, r.Scan(&c.loan, &c.crop, &c.region, &c.record, &c.kg, &c.area, &c.on, &c.plot)
	})
	if err != nil {
		return fmt.Errorf("harvests of loans: %w", err)
	}
	for _, c := range cands {
		bench, ok := s.model.Benchmarks.Yield(c.crop, c.region)
		if !ok || s.model.Benchmarks.Crops[c.crop].Perennial {
			continue
		}
		y := c.kg / 1000 / c.area
		if y/bench >= shortfallRatio {
			continue
		}
		detail := fmt.Sprintf("verified harvest of %.0f kg of %s on plot %s (%.2f ha) on %s: %.2f t/ha, %.0f%% of the %.1f t/ha benchmark (scorecard %s)",
			c.kg, c.crop, c.plot, c.area, c.on.Format(time.DateOnly), y, 100*y/bench, bench, s.model.Version)
		if _, err := tx.Exec(ctx, `
			INSERT INTO lending.restructurings (id, loan_id, cause, evidence, detail, extension_days)
			VALUES (gen_random_uuid(), $1, 'harvest_shortfall', $2, $3, $4) ON CONFLICT DO NOTHING`, c.loan, c.record, detail, shortfallExtension); err != nil {
			return fmt.Errorf("propose restructuring of loan %s: %w", c.loan, err)
		}
	}
	return nil
}

// proposeForShocks proposes each active shock's extension to the loans of
// its region and crops falling due from its start to 60 days after its end.
func (s *Service) proposeForShocks(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO lending.restructurings (id, loan_id, cause, evidence, detail, extension_days)
		SELECT gen_random_uuid(), l.id, 'regional_shock', sh.id::text,
		       format('regional shock in %s (%s), %s to %s, declared by %s: %s', sh.region, array_to_string(sh.crops, ', '), sh.starts_on, sh.ends_on, sh.declared_by, sh.reason),
		       sh.extension_days
		FROM lending.shocks sh
		JOIN lending.loans l ON l.region = sh.region AND l.crop = ANY(sh.crops) AND l.state IN ('disbursed', 'in_arrears', 'restructured')
		                    AND l.due_on BETWEEN sh.starts_on AND sh.ends_on + 60
		WHERE sh.starts_on <= $1::date
		ON CONFLICT DO NOTHING`, dayOf(s.now()))
	if err != nil {
		return fmt.Errorf("propose restructurings for shocks: %w", err)
	}
	return nil
}

// retryDecisions decides agents' applications that waited for consent.
func (s *Service) retryDecisions(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, `SELECT organization_id::text, id::text FROM lending.loans WHERE state = 'applied' AND channel = 'agent'
		AND (decision_reason IS NULL OR decision_reason = $1) ORDER BY created_at LIMIT 1000`, awaitingConsent)
	if err != nil {
		return fmt.Errorf("applications awaiting a decision: %w", err)
	}
	pending, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var p [2]string
		return p, r.Scan(&p[0], &p[1])
	})
	if err != nil {
		return fmt.Errorf("applications awaiting a decision: %w", err)
	}
	for _, p := range pending {
		// Ask the gate first whether a read would be allowed (a check that
		// reads no farmer data and logs nothing), so that a farmer who has
		// not consented yet does not collect a denied read every pass.
		var farmer string
		if err := s.pool.QueryRow(ctx, `SELECT farmer_id::text FROM lending.loans WHERE id = $1`, p[1]).Scan(&farmer); err != nil {
			return fmt.Errorf("application %s: %w", p[1], err)
		}
		checks := make([]consent.Check, len(scoreScopes))
		for i, sc := range scoreScopes {
			checks[i] = consent.Check{OrganizationID: p[0], FarmerID: farmer, Scope: sc}
		}
		ok, err := s.gate.AllowsAll(ctx, checks)
		if err != nil {
			return fmt.Errorf("consent for application %s: %w", p[1], err)
		}
		if slices.Contains(ok, false) {
			continue
		}
		s.policyDecision(ctx, p[0], p[1])
	}
	return nil
}

// journalPending journals every committed loan event and score whose
// entry is not in the journal yet, oldest first.
func (s *Service) journalPending(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, `SELECT loan_id::text, revision, kind, payload, at FROM lending.loan_events WHERE leaf_index IS NULL ORDER BY at, loan_id, revision LIMIT 5000`)
	if err != nil {
		return fmt.Errorf("unjournaled loan events: %w", err)
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (loanEvent, error) {
		var e loanEvent
		return e, r.Scan(&e.LoanID, &e.Revision, &e.Kind, &e.Payload, &e.At)
	})
	if err != nil {
		return fmt.Errorf("unjournaled loan events: %w", err)
	}
	rows, err = s.pool.Query(ctx, `SELECT id::text, model_version, payload, computed_at FROM lending.scores WHERE leaf_index IS NULL AND payload IS NOT NULL ORDER BY computed_at LIMIT 5000`)
	if err != nil {
		return fmt.Errorf("unjournaled scores: %w", err)
	}
	scores, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*scoreRow, error) {
		var sc scoreRow
		return &sc, r.Scan(&sc.ID, &sc.Result.Model, &sc.Payload, &sc.At)
	})
	if err != nil {
		return fmt.Errorf("unjournaled scores: %w", err)
	}
	return errors.Join(s.journalEvents(ctx, evs), s.journalScores(ctx, scores))
}
