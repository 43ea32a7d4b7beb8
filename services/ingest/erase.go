package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/natsbus"
)

// ErasureConsumerName is ingest's durable consumer of erasure requests.
const ErasureConsumerName = "ingest-erasure"

// eraser is ingest as an owner of farmer data: its erasures table is the
// tombstone its writers check.
var eraser = forget.Owner{Name: "ingest", Table: "ingest.erasures"}

// ErasedReason is what an agent is told about a record refused because its
// farmer was erased.
const ErasedReason = "farmer was erased"

// errErased marks a record about an erased farmer: it is refused, its
// message deleted, and nothing about it is stored or announced.
var errErased = errors.New(ErasedReason)

// Erased is what ingest's erasure of a farmer removed (counts only).
type Erased struct {
	Submissions int64 `json:"submissions"`
	Farmers     int64 `json:"farmers"`
	Plots       int64 `json:"plots"`
	CropCycles  int64 `json:"crop_cycles"`
	Inputs      int64 `json:"input_applications"`
	Harvests    int64 `json:"harvests"`
	Sales       int64 `json:"sales"`
	Consents    int64 `json:"consents"`
	LoanRecords int64 `json:"loan_records"`
	Messages    int   `json:"messages"`     // farm.submitted copies of the farmer's records
	DeadLetters int   `json:"dead_letters"` // the farmer's records ingest refused
}

// erase deletes everything ingest holds about a farmer: the raw
// submissions (sealed originals with them), every projection, and every copy of their records on farm.submitted and
// among ingest's dead letters. Deletion, not encryption: the projections
// feed PostGIS and sync-down and must be plain; what is gone needs no key.
func (s *Service) erase(ctx context.Context, r forget.Request) (any, error) {
	var out Erased
	var ids []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out, ids = Erased{}, nil
		if _, err := eraser.Begin(ctx, tx, r); err != nil {
			return err
		}
		// The append-only trigger lets these go because the farmer now
		// has a row in ingest.erasures.
		rows, err := tx.Query(ctx, `DELETE FROM ingest.submissions WHERE lower(payload->>'farmer_id') = $1 RETURNING id::text`, r.FarmerID)
		if err != nil {
			return fmt.Errorf("delete submissions: %w", err)
		}
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return fmt.Errorf("delete submissions: %w", err)
		}
		out.Submissions = int64(len(ids))
		for table, n := range map[string]*int64{
			"farmers": &out.Farmers, "plots": &out.Plots, "crop_cycles": &out.CropCycles, "input_applications": &out.Inputs,
			"harvests": &out.Harvests, "sales": &out.Sales, "consents": &out.Consents, "loan_records": &out.LoanRecords,
		} {
			tag, err := tx.Exec(ctx, `DELETE FROM ingest.`+table+` WHERE farmer_id = $1`, r.FarmerID)
			if err != nil {
				return fmt.Errorf("delete from %s: %w", table, err)
			}
			*n = tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The stream: every copy of the farmer's records, whether ingest
	// stored it, refused it or saw it twice.
	if out.Messages, err = forget.Purge(ctx, s.js, natsbus.StreamFarm, []string{natsbus.SubjectSubmittedPrefix + ">"}, forget.IsFarmers(r.FarmerID)); err != nil {
		return nil, err
	}
	// The farmer's dead letters; the refusals mobile-api projected from them
	// are mobile-api's to erase.
	if out.DeadLetters, err = forget.Purge(ctx, s.js, natsbus.StreamDead, []string{natsbus.SubjectDeadPrefix + natsbus.SubjectSubmittedPrefix + ">"}, forget.IsFarmers(r.FarmerID)); err != nil {
		return nil, err
	}
	return out, nil
}

// fenceErased takes the locks of the batch's farmers and marks the records
// about farmers ingest erased (errErased); it returns the others. It runs
// first in every storing transaction, so no record about a farmer commits
// after that farmer's erasure has read what to delete.
func (s *Service) fenceErased(ctx context.Context, tx pgx.Tx, items []*item) ([]*item, error) {
	farmers := make([]string, len(items))
	for i, it := range items {
		farmers[i] = it.payload.Farmer()
	}
	erased, err := eraser.Fence(ctx, tx, farmers)
	if err != nil || len(erased) == 0 {
		return items, err
	}
	var live []*item
	for i, it := range items {
		if erased.Has(farmers[i]) {
			it.err = errErased
			continue
		}
		live = append(live, it)
	}
	return live, nil
}

// forgetErased settles the records about erased farmers: those the
// storing transaction fenced off, and refused ones (invalid, conflicting)
// whose farmer was erased, which must not become dead letters. Each is
// refused with ErasedReason for the agent's status and deleted for good
// from the stream (forget.Excise: the message it came in, or, for a
// bundle, its records about erased farmers); then it is acked. If either
// step fails, the record is retried.
func (s *Service) forgetErased(ctx context.Context, items []*item) {
	var suspects []*item
	var farmers []string
	for _, it := range items {
		switch code := apperr.CodeOf(it.err); {
		case errors.Is(it.err, errErased):
			suspects = append(suspects, it)
		case code == apperr.Invalid || code == apperr.Conflict:
			suspects = append(suspects, it)
			farmers = append(farmers, forget.FarmerOf(it.msg.Data()))
		}
	}
	if len(suspects) == 0 {
		return
	}
	erased, err := eraser.Erased(ctx, s.pool, farmers)
	if err != nil {
		s.logger.WarnContext(ctx, "look up erased farmers", "err", err)
		erased = forget.Farmers{}
	}
	// The records to forget, by the message they came in: a bundle is
	// excised once, of all its records about erased farmers.
	byMessage := map[uint64][]*item{}
	var order []uint64
	for _, it := range suspects {
		if !errors.Is(it.err, errErased) && !erased.Has(forget.FarmerOf(it.msg.Data())) {
			continue
		}
		if _, seen := byMessage[it.seq]; !seen {
			order = append(order, it.seq)
		}
		byMessage[it.seq] = append(byMessage[it.seq], it)
	}
	for _, seq := range order {
		its := byMessage[seq]
		err := eraser.ExciseErased(ctx, s.pool, s.js, natsbus.StreamFarm, its[0].msg)
		for _, it := range its {
			if err != nil {
				it.err = fmt.Errorf("delete erased farmer's record %s from the stream: %w", forget.RecordIDOf(it.msg.Data()), err)
				continue
			}
			it.err = nil
		}
	}
}
