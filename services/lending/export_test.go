package lending

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/services/lending/scorecard"
)

// EvidenceBothWays reads a farmer's evidence as a score does (only the
// plots' area provenance) and as a profile does (every provenance row),
// and returns the scorecard's evidence of each as of at.
func EvidenceBothWays(ctx context.Context, pool *pgxpool.Pool, farmer string, at time.Time) (score, profile scorecard.Evidence, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		s, err := loadFarmers(ctx, tx, []string{farmer}, defaultSections, plotAreaProvenance)
		if err != nil {
			return err
		}
		p, err := loadFarmers(ctx, tx, []string{farmer}, defaultSections, allProvenance)
		if err != nil {
			return err
		}
		score, profile = s[farmer].evidence(at), p[farmer].evidence(at)
		return nil
	})
	return score, profile, err
}
