package attest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/ledger"
)

// ErasureConsumerName is attest's durable consumer of erasure requests.
const ErasureConsumerName = "attest-erasure"

// StatusErased is the outcome of a record about a farmer attest has
// erased: it is not decided, stored, journaled or announced, and its
// message is deleted.
const StatusErased = "erased"

// eraser is attest as an owner of farmer data: its erasures table is the
// tombstone its writers check.
var eraser = forget.Owner{Name: "attest", Table: "attest.erasures", Clear: []string{"record_ids", "review_ids"}}

// Erased is what attest's erasure of a farmer removed (counts and journal
// leaves only).
type Erased struct {
	Records      int64         `json:"records"`
	Provenance   int64         `json:"provenance"`
	Reviews      int64         `json:"reviews"`
	ReviewEvents int64         `json:"review_events"`
	Visits       int64         `json:"visits"`
	Farmers      int64         `json:"farmers"`
	Plots        int64         `json:"plots"`
	CropCycles   int64         `json:"crop_cycles"`
	Harvests     int64         `json:"harvests"`
	Sales        int64         `json:"sales"`
	Journal      ledger.Erased `json:"journal"`
	Messages     int           `json:"messages"`     // farm.ingested and farm.attested
	DeadLetters  int           `json:"dead_letters"` // the farmer's records attest refused
}

// erase deletes everything attest holds about a farmer and has the
// journal forget the farmer's revisions: attest journaled them (verified
// records and review decisions), so it knows which. In order:
//
//  1. the tombstone, under the farmer's lock, and the ids of the farmer's
//     records and reviews (kept in the row until the erasure completes, so
//     that a retry after step 3 still knows them);
//  2. the journal erasure (ledger.Journal.Erase): payloads erased, one
//     redaction entry per revision, the erasure's own entry; from then on
//     the journal refuses those records;
//  3. every row about the farmer: decisions with their sealed originals,
//     provenance, reviews and their audit trail, visits, projections;
//  4. every copy on farm.ingested and farm.attested, and attest's dead
//     letters of them.
func (s *Service) erase(ctx context.Context, r forget.Request) (any, error) {
	var out Erased
	var records, reviews []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := eraser.Begin(ctx, tx, r); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `
			UPDATE attest.erasures e SET
			    record_ids = ARRAY(SELECT DISTINCT unnest(coalesce(e.record_ids, '{}') ||
			        ARRAY(SELECT record_id FROM attest.records WHERE farmer_id = e.farmer_id))),
			    review_ids = ARRAY(SELECT DISTINCT unnest(coalesce(e.review_ids, '{}') ||
			        ARRAY(SELECT v.id FROM attest.reviews v JOIN attest.records a USING (record_id) WHERE a.farmer_id = e.farmer_id)))
			WHERE erasure_id = $1
			RETURNING record_ids::text[], review_ids::text[]`, r.ErasureID).Scan(&records, &reviews)
	})
	if err != nil {
		return nil, fmt.Errorf("list the farmer's records: %w", err)
	}
	occurred := r.RequestedAt
	if occurred.IsZero() {
		occurred = time.Now()
	}
	out.Journal, err = s.journal.Erase(ctx, ledger.Erasure{
		ID: r.ErasureID, Revision: 2, Kind: forget.KindExecuted, Subject: "farmer " + r.FarmerID,
		RecordIDs: append(append([]string(nil), records...), reviews...), OccurredAt: occurred, SignatureRef: "attest",
	})
	if err != nil {
		return nil, fmt.Errorf("erase the farmer's journal revisions: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		f := r.FarmerID
		steps := []struct {
			n     *int64
			table string
			where string
			arg   any
		}{
			{&out.Provenance, "provenance", "record_id = ANY($1::uuid[])", records},
			// The append-only trigger lets these go: the farmer has a row
			// in attest.erasures.
			{&out.ReviewEvents, "review_events", "review_id = ANY($1::uuid[])", reviews},
			{&out.Visits, "visits", "review_id = ANY($1::uuid[])", reviews},
			{&out.Visits, "visits", "farmer_id = $1", f},
			{&out.Reviews, "reviews", "id = ANY($1::uuid[])", reviews},
			{&out.Records, "records", "record_id = ANY($1::uuid[])", records},
			{&out.Records, "records", "farmer_id = $1", f},
			{&out.Farmers, "farmers", "farmer_id = $1", f},
			{&out.Plots, "plots", "farmer_id = $1", f},
			{&out.CropCycles, "crop_cycles", "farmer_id = $1", f},
			{&out.Harvests, "harvests", "farmer_id = $1", f},
			{&out.Sales, "sales", "farmer_id = $1", f},
		}
		for _, st := range steps {
			tag, err := tx.Exec(ctx, `DELETE FROM attest.`+st.table+` WHERE `+st.where, st.arg)
			if err != nil {
				return fmt.Errorf("delete from %s: %w", st.table, err)
			}
			*st.n += tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete the farmer's rows: %w", err)
	}
	ids := map[string]bool{}
	for _, id := range records {
		ids[id] = true
	}
	isFarmers := forget.IsFarmers(r.FarmerID)
	isAttested := func(msg jetstream.Msg) bool {
		var a struct {
			RecordID string `json:"record_id"`
		}
		return json.Unmarshal(msg.Data(), &a) == nil && ids[strings.ToLower(a.RecordID)]
	}
	either := func(msg jetstream.Msg) bool {
		if strings.Contains(msg.Subject(), natsbus.SubjectAttestedPrefix) {
			return isAttested(msg)
		}
		return isFarmers(msg)
	}
	for _, p := range []struct {
		stream string
		n      *int
		prefix string
	}{{natsbus.StreamFarm, &out.Messages, ""}, {natsbus.StreamDead, &out.DeadLetters, natsbus.SubjectDeadPrefix}} {
		*p.n, err = forget.Purge(ctx, s.js, p.stream, []string{p.prefix + natsbus.SubjectIngestedPrefix + ">", p.prefix + natsbus.SubjectAttestedPrefix + ">"}, either)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fenceErased takes the locks of the inputs' farmers and splits off the
// inputs about farmers attest erased. It runs first in the deciding
// transaction, so no decision about a farmer commits after that farmer's
// erasure has listed what to erase.
func (s *Service) fenceErased(ctx context.Context, tx pgx.Tx, ins []Input) (live, gone []Input, err error) {
	farmers := make([]string, len(ins))
	for i, in := range ins {
		farmers[i] = in.Payload.Farmer()
	}
	erased, err := eraser.Fence(ctx, tx, farmers)
	if err != nil || len(erased) == 0 {
		return ins, nil, err
	}
	for i, in := range ins {
		if erased.Has(farmers[i]) {
			gone = append(gone, in)
		} else {
			live = append(live, in)
		}
	}
	return live, gone, nil
}

// erasedDecision is the outcome of an input about an erased farmer.
func erasedDecision(in Input) *Decision {
	return &Decision{RecordID: in.Env.ID, Type: in.Env.Type, AgentID: in.AgentID, Status: StatusErased, Reason: "farmer was erased", Decision: 1}
}

// forgetMessage deletes for good the message of a record about an erased
// farmer, so that no copy of it outlives the erasure; from a bundle, the
// records about erased farmers (forget.Owner.ExciseErased).
func (s *Service) forgetMessage(ctx context.Context, msg jetstream.Msg) error {
	md, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("message metadata: %w", err)
	}
	return eraser.ExciseErased(ctx, s.pool, s.js, md.Stream, msg)
}

// forgetRefused turns the refusals of messages about erased farmers
// (undecodable or mis-attributed records, which would be dead-lettered
// with their content) into deletions.
func (s *Service) forgetRefused(ctx context.Context, msgs []jetstream.Msg, errs []error) {
	var farmers []string
	for i, err := range errs {
		if apperr.Is(err, apperr.Invalid) || apperr.Is(err, apperr.Conflict) {
			farmers = append(farmers, forget.FarmerOf(msgs[i].Data()))
		}
	}
	if len(farmers) == 0 {
		return
	}
	erased, err := eraser.Erased(ctx, s.pool, farmers)
	if err != nil {
		s.logger.WarnContext(ctx, "look up erased farmers", "err", err)
		return
	}
	for i, err := range errs {
		if (apperr.Is(err, apperr.Invalid) || apperr.Is(err, apperr.Conflict)) && erased.Has(forget.FarmerOf(msgs[i].Data())) {
			errs[i] = s.forgetMessage(ctx, msgs[i])
		}
	}
}

// forgetAnnounced deletes farm.attested messages just published about
// records that an erasure removed meanwhile (announce read them before the
// erasure deleted them). Nobody consumes farm.attested to refuse them
// later, and the erasure's scan may have run before they were published.
func (s *Service) forgetAnnounced(ctx context.Context, published map[string]uint64, kept []string) error {
	for _, id := range kept {
		delete(published, id)
	}
	for id, seq := range published {
		if err := forget.Delete(ctx, s.js, natsbus.StreamFarm, seq); err != nil {
			return fmt.Errorf("delete announcement of erased record %s: %w", id, err)
		}
	}
	return nil
}

// withoutErased leaves out the revisions of records about farmers attest
// erased (an erasure that ran between a decision and its journaling).
func (s *Service) withoutErased(ctx context.Context, revs []ledger.Revision) ([]ledger.Revision, error) {
	ids := make([]string, len(revs))
	for i, r := range revs {
		ids[i] = r.RecordID
	}
	rows, err := s.pool.Query(ctx, `
		SELECT r.record_id::text FROM attest.records r JOIN attest.erasures e USING (farmer_id)
		WHERE r.record_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("find erased records: %w", err)
	}
	erased, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("find erased records: %w", err)
	}
	if len(erased) == 0 {
		return revs, nil
	}
	gone := map[string]bool{}
	for _, id := range erased {
		gone[id] = true
	}
	var kept []ledger.Revision
	for _, r := range revs {
		if !gone[r.RecordID] {
			kept = append(kept, r)
		}
	}
	return kept, nil
}
