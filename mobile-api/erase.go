package mobileapi

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/forget"
)

// ErasureConsumerName is mobile-api's durable consumer of erasure requests.
const ErasureConsumerName = "mobile-api-erasure"

// ErasedMessage is the field error of a record about an erased farmer.
const ErasedMessage = "farmer was erased"

// eraser is mobile-api as an owner of farmer data: its erasures table is
// the tombstone /sync checks.
var eraser = forget.Owner{Name: "mobile-api", Table: "mobile.erasures", Clear: []string{"media_pending"}}

// Erased is what mobile-api's erasure of a farmer removed (counts only).
type Erased struct {
	Received      int64 `json:"received"`
	Refusals      int64 `json:"refusals"`
	ReceivedMedia int64 `json:"received_media"`
	Assignments   int64 `json:"assignments"`
	OTPChallenges int64 `json:"otp_challenges"`
	AccessDigests int64 `json:"access_digests"`
	Media         int64 `json:"media"`
	MediaFiles    int   `json:"media_files"`
	MediaUploads  int   `json:"media_uploads"` // unfinished uploads of the same content
}

// erase deletes what mobile-api holds about a farmer: the records it
// received from phones (hashes, links to media), the assignments (so the
// farmer leaves every agent's sync-down), consent codes, and the farmer's
// media, row and file, unless a record about another farmer references
// the same content. The agents who served the farmer are kept in the
// tombstone: their phones are told to drop the farmer.
func (s *Service) erase(ctx context.Context, r forget.Request) (any, error) {
	var out Erased
	var pending []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = Erased{}
		if _, err := eraser.Begin(ctx, tx, r); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			UPDATE mobile.erasures e SET agent_ids = ARRAY(SELECT DISTINCT unnest(e.agent_ids
			    || ARRAY(SELECT agent_id FROM mobile.assignments WHERE farmer_id = e.farmer_id)
			    || ARRAY(SELECT agent_id FROM mobile.received WHERE farmer_id = e.farmer_id AND agent_id IS NOT NULL)))
			WHERE erasure_id = $1`, r.ErasureID); err != nil {
			return fmt.Errorf("remember the farmer's agents: %w", err)
		}
		// Media only this farmer's records reference. A record whose
		// farmer is unknown (received before farmers were recorded)
		// counts as another farmer's: its photo is kept.
		rows, err := tx.Query(ctx, `
			SELECT DISTINCT rm.sha256 FROM mobile.received_media rm JOIN mobile.received r ON r.id = rm.record_id
			WHERE r.farmer_id = $1 AND NOT EXISTS (
			    SELECT 1 FROM mobile.received_media o JOIN mobile.received x ON x.id = o.record_id
			    WHERE o.sha256 = rm.sha256 AND x.farmer_id IS DISTINCT FROM $1)`, r.FarmerID)
		if err != nil {
			return fmt.Errorf("find the farmer's media: %w", err)
		}
		media, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("find the farmer's media: %w", err)
		}
		for _, st := range []struct {
			n   *int64
			sql string
			arg any
		}{
			{&out.ReceivedMedia, `DELETE FROM mobile.received_media WHERE record_id IN (SELECT id FROM mobile.received WHERE farmer_id = $1)`, r.FarmerID},
			{&out.Refusals, `DELETE FROM mobile.refusals WHERE record_id IN (SELECT id FROM mobile.received WHERE farmer_id = $1)`, r.FarmerID},
			{&out.Received, `DELETE FROM mobile.received WHERE farmer_id = $1`, r.FarmerID},
			{&out.Assignments, `DELETE FROM mobile.assignments WHERE farmer_id = $1`, r.FarmerID},
			{&out.OTPChallenges, `DELETE FROM mobile.otp_challenges WHERE farmer_id = $1`, r.FarmerID},
			{&out.AccessDigests, `DELETE FROM mobile.access_digests WHERE farmer_id = $1`, r.FarmerID},
			{&out.Media, `DELETE FROM mobile.media WHERE sha256 = ANY($1::text[])`, media},
		} {
			tag, err := tx.Exec(ctx, st.sql, st.arg)
			if err != nil {
				return fmt.Errorf("erase: %w", err)
			}
			*st.n = tag.RowsAffected()
		}
		// The files go after the commit; until the erasure completes the
		// row remembers which, so a retry still deletes them.
		return tx.QueryRow(ctx, `
			UPDATE mobile.erasures SET media_pending = ARRAY(SELECT DISTINCT unnest(coalesce(media_pending, '{}') || $2::text[]))
			WHERE erasure_id = $1 RETURNING media_pending`, r.ErasureID, media).Scan(&pending)
	})
	if err != nil {
		return nil, err
	}
	if s.media != nil {
		if out.MediaFiles, out.MediaUploads, err = s.media.Forget(ctx, pending); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// erasedFarmers returns which of the farmers mobile-api has erased:
// records about them are refused at /sync.
func (s *Service) erasedFarmers(ctx context.Context, farmers []string) (forget.Farmers, error) {
	return eraser.Erased(ctx, s.pool, farmers)
}

// fenceErased takes the locks of the batch's farmers in tx and leaves out
// the records about farmers erased since /sync checked them: JetStream has
// them already (ingest refuses them), mobile-api remembers none of them.
func (s *Service) fenceErased(ctx context.Context, tx pgx.Tx, batch []pending) ([]pending, error) {
	farmers := make([]string, len(batch))
	for i, p := range batch {
		farmers[i] = p.payload.Farmer()
	}
	erased, err := eraser.Fence(ctx, tx, farmers)
	if err != nil || len(erased) == 0 {
		return batch, err
	}
	var live []pending
	for i, p := range batch {
		if !erased.Has(farmers[i]) {
			live = append(live, p)
		}
	}
	return live, nil
}

// erasedSince lists the farmers an agent served that were erased since
// the sync-down cursor, so that the phone deletes what it holds of them.
func erasedSince(ctx context.Context, tx pgx.Tx, agentID string, since uint64) ([]string, error) {
	rows, err := tx.Query(ctx, `
		SELECT farmer_id::text FROM mobile.erasures
		WHERE agent_ids @> ARRAY[$1::uuid] AND erase_xid >= $2::xid8 ORDER BY farmer_id`, agentID, strconv.FormatUint(since, 10))
	if err != nil {
		return nil, fmt.Errorf("list erased farmers: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list erased farmers: %w", err)
	}
	return out, nil
}
