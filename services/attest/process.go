package attest

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/parallel"
	"github.com/tani-platform/tani/internal/postgres"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/ledger"
)

// Input is one ingested record as attest receives it.
type Input struct {
	Env        record.Envelope
	Payload    record.Payload // a checked payload from record.Check
	Canonical  []byte         // the exact bytes ingest published, in RFC 8785 form (the signature is checked on them as such)
	AgentID    string
	DeviceID   string
	ReceivedAt time.Time
	// signingInput is what the device signed, when Decode read it from
	// the record; else it is derived from Canonical.
	signingInput []byte
	// checkedBy is the key this process verified the signature under
	// (record.Memo), if it did.
	checkedBy ed25519.PublicKey
}

// Decision is attest's answer for one record.
type Decision struct {
	RecordID         string      `json:"record_id"`
	Type             record.Type `json:"type"`
	AgentID          string      `json:"agent_id"`
	Status           string      `json:"status"`
	Reason           string      `json:"reason,omitempty"`
	Results          []Result    `json:"results"`
	ThresholdVersion int         `json:"thresholds_version"`
	LeafIndex        *int64      `json:"leaf_index,omitempty"`
	// Decision counts the record's decisions: 1 for the rules', +1 for each
	// review that changed its status. It names farm.attested messages.
	Decision int `json:"decision"`
}

// signatureRef names who signed a record, for the journal entry.
func signatureRef(deviceID, agentID, signature string) string {
	return fmt.Sprintf("ed25519 device=%s agent=%s sig=%s", deviceID, agentID, signature)
}

// Process decides a batch of records: it evaluates every rule on the
// records not decided yet, stores the decisions in one transaction, then
// appends every verified record to the journal in one Append. It is
// idempotent on record id: a decided record is not evaluated again, only
// journaled if that had not happened. A record whose rules errored comes
// back pending; the caller retries it.
func (s *Service) Process(ctx context.Context, ins []Input) ([]Decision, error) {
	if len(ins) == 0 {
		return nil, nil
	}
	ids := make([]string, len(ins))
	for i, in := range ins {
		ids[i] = in.Env.ID
	}
	decided, err := s.loadDecided(ctx, ids)
	if err != nil {
		return nil, err
	}
	var fresh []Input
	seen := map[string]bool{}
	for _, in := range ins {
		if _, ok := decided[in.Env.ID]; ok || seen[in.Env.ID] {
			continue
		}
		seen[in.Env.ID] = true
		fresh = append(fresh, in)
	}
	var byVisit []string // flagged records a second-agent visit approved
	// Journal revisions of the records decided now, built from what is in
	// memory; records decided earlier are rebuilt from what is stored.
	var revs map[string]ledger.Revision
	if len(fresh) > 0 {
		var newly map[string]*Decision
		var gone []Input // about farmers attest erased
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			live, erased, err := s.fenceErased(ctx, tx, fresh)
			if err != nil || len(live) == 0 {
				gone = erased
				return err
			}
			gone = erased
			newly, revs, byVisit, err = s.decide(ctx, tx, live)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("decide %d records: %w", len(fresh), err)
		}
		for _, in := range gone {
			decided[in.Env.ID] = erasedDecision(in)
		}
		for id, d := range newly {
			decided[id] = d
		}
		s.metrics.observe(newly)
	}
	if err := s.journalRecords(ctx, decided, revs); err != nil {
		return nil, err
	}
	if len(byVisit) > 0 {
		if err := s.journalReviewEvents(ctx); err != nil {
			return nil, err
		}
		approved, err := s.loadDecided(ctx, byVisit)
		if err != nil {
			return nil, err
		}
		if err := s.journalRecords(ctx, approved, nil); err != nil {
			return nil, err
		}
		if err := s.announce(ctx, byVisit); err != nil {
			return nil, err
		}
	}
	out := make([]Decision, 0, len(ins))
	for _, id := range ids {
		if d, ok := decided[id]; ok {
			out = append(out, *d)
		}
	}
	return out, nil
}

// loadDecided returns the stored decisions among ids that are final
// (not pending).
func (s *Service) loadDecided(ctx context.Context, ids []string) (map[string]*Decision, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT record_id::text, type, agent_id::text, status, coalesce(reason, ''), results, coalesce(threshold_version, 0), leaf_index, decision
		FROM attest.records WHERE record_id = ANY($1::uuid[]) AND status <> 'pending'`, ids)
	if err != nil {
		return nil, fmt.Errorf("load decisions: %w", err)
	}
	out := map[string]*Decision{}
	for rows.Next() {
		d := &Decision{}
		if err := rows.Scan(&d.RecordID, &d.Type, &d.AgentID, &d.Status, &d.Reason, &d.Results, &d.ThresholdVersion, &d.LeafIndex, &d.Decision); err != nil {
			return nil, fmt.Errorf("scan decision: %w", err)
		}
		out[d.RecordID] = d
	}
	return out, rows.Err()
}

// decide evaluates fresh records in tx and stores the decisions. It
// returns the decisions, the journal revisions of the verified records and
// the flagged records a second-agent visit in the batch approved.
//
// The rules and everything derived from a record alone (its sealed form,
// its protected journal payload) run on every core: signature checks and
// JSON work are the CPU cost of a batch, and records do not depend on each
// other once their evidence is loaded.
func (s *Service) decide(ctx context.Context, tx pgx.Tx, fresh []Input) (map[string]*Decision, map[string]ledger.Revision, []string, error) {
	th, err := loadThresholds(ctx, tx)
	if err != nil {
		return nil, nil, nil, err
	}
	devices, err := loadDevices(ctx, tx, fresh)
	if err != nil {
		return nil, nil, nil, err
	}
	measured, err := s.project(ctx, tx, fresh, devices)
	if err != nil {
		return nil, nil, nil, err
	}
	ev, err := loadEvidence(ctx, tx, fresh, measured)
	if err == nil {
		err = loadMarketEvidence(ctx, tx, fresh, ev)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	signatures := s.verifySignatures(fresh, devices)
	js := make([]judged, len(fresh))
	parallel.For(len(fresh), func(i int) { js[i] = s.judge(fresh[i], ev[i], devices[fresh[i].DeviceID], signatures[i], th) })
	now := time.Now().UTC()
	out := make(map[string]*Decision, len(fresh))
	revs := map[string]ledger.Revision{}
	w := &writer{}
	for i := range js {
		j := &js[i]
		out[j.d.RecordID] = j.d
		if j.rev != nil {
			revs[j.d.RecordID] = *j.rev
		}
		w.add(j, now)
	}
	if err := w.flush(ctx, tx); err != nil {
		return nil, nil, nil, err
	}
	byVisit, err := s.corroborate(ctx, tx, fresh, out)
	if err != nil {
		return nil, nil, nil, err
	}
	return out, revs, byVisit, nil
}

// judged is one record with its decision and what is stored and journaled
// of it.
type judged struct {
	c       *Case
	d       *Decision
	region  string
	results []byte           // d.Results as JSON
	sealed  []byte           // the signed record, sealed: it holds national IDs and phones
	rev     *ledger.Revision // verified records only
}

// verifySignatures checks the device signature of every input whose
// device is enrolled, all at once (record.Keys.VerifyAll), for the
// device.signature rule. An input without a device gets no check: the
// rule rejects it for that.
func (s *Service) verifySignatures(ins []Input, devices map[string]*DeviceKey) []signatureCheck {
	out := make([]signatureCheck, len(ins))
	var items []record.Signed
	var at []int
	for i, in := range ins {
		d := devices[in.DeviceID]
		if d == nil {
			continue
		}
		if in.checkedBy != nil && in.checkedBy.Equal(ed25519.PublicKey(d.PublicKey)) {
			out[i] = signatureCheck{done: true} // verified by this process under this very key
			continue
		}
		msg := in.signingInput
		if msg == nil {
			var err error
			if msg, err = record.SigningInputOf(in.Canonical); err != nil {
				out[i] = signatureCheck{done: true, err: err}
				continue
			}
		}
		items, at = append(items, record.Signed{Key: d.PublicKey, Message: msg, Signature: in.Env.Signature}), append(at, i)
	}
	for j, err := range s.keys.VerifyAll(items) {
		out[at[j]] = signatureCheck{done: true, err: err}
	}
	return out
}

// judge evaluates the rules on one record and derives what is stored of
// it. It touches no shared state, so records are judged in parallel.
func (s *Service) judge(in Input, ev Evidence, device *DeviceKey, sig signatureCheck, th Thresholds) judged {
	region := ""
	if device != nil {
		region = device.Region
	}
	ev.Device = device
	c := &Case{Env: in.Env, Payload: in.Payload, Canonical: in.Canonical, AgentID: in.AgentID, DeviceID: in.DeviceID, ReceivedAt: in.ReceivedAt, Ev: ev, signature: sig}
	var results []Result
	var err error
	if c.T, err = th.For(in.Payload.Crop(), region); err != nil {
		results = []Result{{Rule: "thresholds", Version: 1, Verdict: Error, Explanation: err.Error()}}
	} else {
		results = Evaluate(s.rules, c)
	}
	status, reason := Outcome(results)
	d := &Decision{RecordID: in.Env.ID, Type: in.Env.Type, AgentID: in.AgentID, Status: status, Reason: reason, Results: results, ThresholdVersion: th.Version, Decision: 1}
	j := judged{c: c, d: d, region: region, sealed: s.seal(in.Canonical)}
	if status == StatusVerified {
		// The journal gets the protected record (see recordRevisions). A
		// record that cannot be protected cannot be journaled, so it must
		// not be verified: it stays pending with the reason.
		rev, err := s.revision(in.Env.ID, string(in.Env.Type), in.Canonical, in.Env.Captured(), signatureRef(in.DeviceID, in.AgentID, in.Env.Signature))
		if err != nil {
			d.Status, d.Reason = StatusPending, err.Error()
		} else {
			j.rev = &rev
		}
	}
	j.results, _ = json.Marshal(d.Results) // Results are strings and ints: Marshal cannot fail
	return j
}

// provenanceFor says how each attribute of a record the rules verified
// was established. Only GPS-measured plot attributes expire: land is
// re-measured every AreaValidSeasons seasons (six months each).
func provenanceFor(c *Case, at time.Time) []provenance {
	agent := "agent:" + c.AgentID
	p := func(attr, method string, expires *time.Time) provenance {
		return provenance{attribute: attr, method: method, verifier: agent, at: at, expires: expires}
	}
	out := []provenance{p("origin", "device_signature", nil)}
	switch c.Env.Type {
	case record.TypeFarmerRegistered:
		out = append(out, p("identity", "self_reported", nil), p("phone", "self_reported", nil))
	case record.TypePlotMapped:
		exp := c.Env.Captured().AddDate(0, 6*c.T.AreaValidSeasons, 0)
		out = append(out, p("boundary", "gps_walk", &exp), p("area_ha", "gps_walk", &exp),
			p("declared_area_ha", "self_reported", nil), p("tenure", "self_reported", nil))
	case record.TypeCropPlanted:
		out = append(out, p("crop", "self_reported", nil), p("planted_on", "self_reported", nil))
	case record.TypeInputApplied:
		out = append(out, p("quantity", "self_reported", nil))
	case record.TypeHarvestRecorded, record.TypeSaleRecorded:
		out = append(out, p("quantity", "self_reported", nil))
	case record.TypeConsentGranted, record.TypeConsentRevoked, record.TypeConsentRefused:
		out = append(out, p("consent", "self_reported", nil))
	case record.TypeLoanApplied:
		out = append(out, p("application", "self_reported", nil))
	case record.TypeLoanAccepted:
		// mobile-api acknowledged it only with the one-time code sent to
		// the farmer's phone with the offer's terms.
		out = append(out, p("acceptance", "farmer_otp", nil))
	case record.TypeRepaymentCollected:
		out = append(out, p("amount", "self_reported", nil))
	case record.TypeOrderPlaced:
		out = append(out, p("items", "self_reported", nil))
	case record.TypeDeliveryConfirmed:
		out = append(out, p("items", "self_reported", nil), p("farmer_confirmation", "self_reported", nil))
	}
	return out
}

type provenance struct {
	attribute, method, verifier string
	at                          time.Time
	expires                     *time.Time
}

// writer collects a batch's rows and writes each table with one statement.
type writer struct {
	rec struct {
		id, typ, farmer, plot, agent, device, sigref, status, reason, results, lastErr []string
		captured                                                                       []time.Time
		decided                                                                        []*time.Time // nil while pending
		sealed                                                                         [][]byte
		tv                                                                             []int32
	}
	prov struct {
		record, attr, method, verifier []string
		at                             []time.Time
		expires                        []*time.Time
	}
	rev struct {
		id, record, rules, region, reason []string
	}
	rejected []string
}

func (w *writer) add(j *judged, now time.Time) {
	c, d := j.c, j.d
	r := &w.rec
	lastErr := ""
	if d.Status == StatusPending {
		lastErr = d.Reason
	}
	r.id = append(r.id, d.RecordID)
	r.typ = append(r.typ, string(d.Type))
	r.farmer = append(r.farmer, c.Payload.Farmer())
	r.plot = append(r.plot, c.Payload.Plot())
	r.agent = append(r.agent, c.AgentID)
	r.device = append(r.device, c.DeviceID)
	r.sigref = append(r.sigref, signatureRef(c.DeviceID, c.AgentID, c.Env.Signature))
	r.status = append(r.status, d.Status)
	r.reason = append(r.reason, d.Reason)
	r.results = append(r.results, string(j.results))
	r.lastErr = append(r.lastErr, lastErr)
	r.captured = append(r.captured, c.Env.Captured())
	var decided *time.Time
	if d.Status != StatusPending {
		decided = &now
	}
	r.decided = append(r.decided, decided)
	r.sealed = append(r.sealed, j.sealed)
	r.tv = append(r.tv, int32(d.ThresholdVersion))
	switch d.Status {
	case StatusVerified:
		for _, p := range provenanceFor(c, now) {
			w.prov.record = append(w.prov.record, d.RecordID)
			w.prov.attr = append(w.prov.attr, p.attribute)
			w.prov.method = append(w.prov.method, p.method)
			w.prov.verifier = append(w.prov.verifier, p.verifier)
			w.prov.at = append(w.prov.at, p.at)
			w.prov.expires = append(w.prov.expires, p.expires)
		}
	case StatusFlagged:
		var rules []string
		for _, res := range d.Results {
			if res.Verdict == Flag {
				rules = append(rules, res.Rule)
			}
		}
		w.rev.id = append(w.rev.id, uuid.NewString())
		w.rev.record = append(w.rev.record, d.RecordID)
		w.rev.rules = append(w.rev.rules, strings.Join(rules, ","))
		w.rev.region = append(w.rev.region, j.region)
		w.rev.reason = append(w.rev.reason, d.Reason)
	case StatusRejected:
		w.rejected = append(w.rejected, d.RecordID)
	}
}

func (w *writer) flush(ctx context.Context, tx pgx.Tx) error {
	switch err := w.copyRecords(ctx, tx); {
	case err == nil:
	case postgres.Code(err) != postgres.CodeUniqueViolation:
		return fmt.Errorf("store decisions: %w", err)
	default:
		if err := w.upsertRecords(ctx, tx); err != nil {
			return err
		}
	}
	if len(w.prov.record) > 0 {
		p := &w.prov
		if _, err := tx.Exec(ctx, `
			INSERT INTO attest.provenance (record_id, attribute, method, verifier, verified_at, expires_at)
			SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[])
			ON CONFLICT DO NOTHING`, p.record, p.attr, p.method, p.verifier, p.at, p.expires); err != nil {
			return fmt.Errorf("store provenance: %w", err)
		}
	}
	if len(w.rev.id) > 0 {
		v := &w.rev
		if _, err := tx.Exec(ctx, `
			WITH created AS (
			    INSERT INTO attest.reviews (id, record_id, state, rules, region)
			    SELECT u.id, u.record, 'has_issues', string_to_array(u.rules, ','), u.region
			    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[]) AS u(id, record, rules, region)
			    ON CONFLICT (record_id) DO NOTHING
			    RETURNING id, record_id)
			INSERT INTO attest.review_events (review_id, from_state, to_state, action, actor, reason)
			SELECT c.id, NULL, 'has_issues', 'flagged', 'attest', u.reason
			FROM created c JOIN unnest($2::uuid[], $5::text[]) AS u(record, reason) ON u.record = c.record_id`,
			v.id, v.record, v.rules, v.region, v.reason); err != nil {
			return fmt.Errorf("open reviews: %w", err)
		}
	}
	if len(w.rejected) > 0 {
		// A rejected record must not become evidence for other records.
		for _, table := range []string{"farmers", "plots", "crop_cycles", "harvests", "sales"} {
			if _, err := tx.Exec(ctx, `DELETE FROM attest.`+table+` WHERE record_id = ANY($1::uuid[])`, w.rejected); err != nil {
				return fmt.Errorf("drop rejected records from %s: %w", table, err)
			}
		}
	}
	return nil
}

// recordColumns are the attest.records columns a decision writes, in
// copyRecords' order; the others keep their defaults (one attempt, first
// decision, nothing published or journaled yet).
var recordColumns = []string{"record_id", "type", "farmer_id", "plot_id", "agent_id", "device_id", "captured_at", "sealed_record",
	"signature_ref", "status", "reason", "results", "threshold_version", "last_error", "decided_at"}

// copyRecords stores the batch's decisions by one binary COPY, all or
// none (postgres.CopyNew). A batch is almost always of records attest
// never saw, and for those a COPY costs Postgres about a third of what the
// INSERT … ON CONFLICT from fourteen arrays does (no speculative
// insertion, no arrays to decode; docs/performance.md). A record
// stored before — pending and retried, or redelivered after a crash —
// fails it with a unique violation, and the batch then takes
// upsertRecords.
func (w *writer) copyRecords(ctx context.Context, tx pgx.Tx) error {
	r := &w.rec
	rows := make([][]any, len(r.id))
	for i := range r.id {
		id, err1 := uuid.Parse(r.id[i])
		agent, err2 := uuid.Parse(r.agent[i])
		device, err3 := uuid.Parse(r.device[i])
		farmer, err4 := optionalUUID(r.farmer[i])
		plot, err5 := optionalUUID(r.plot[i])
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return fmt.Errorf("record %s: %w", r.id[i], err)
		}
		// [16]byte, not uuid.UUID: see copyNew in services/ingest.
		rows[i] = []any{[16]byte(id), r.typ[i], farmer, plot, [16]byte(agent), [16]byte(device), r.captured[i], r.sealed[i],
			r.sigref[i], r.status[i], nullIfEmpty(r.reason[i]), r.results[i], r.tv[i], nullIfEmpty(r.lastErr[i]), r.decided[i]}
	}
	return postgres.CopyNew(ctx, tx, pgx.Identifier{"attest", "records"}, recordColumns, rows)
}

// upsertRecords stores the batch's decisions when some of its records are
// stored already: a new record is inserted, a pending one takes its new
// decision and counts one more attempt, a decided one is left as it is.
func (w *writer) upsertRecords(ctx context.Context, tx pgx.Tx) error {
	r := &w.rec
	_, err := tx.Exec(ctx, `
		INSERT INTO attest.records AS a (record_id, type, farmer_id, plot_id, agent_id, device_id, captured_at, sealed_record, signature_ref,
		                                 status, reason, results, threshold_version, last_error, decided_at)
		SELECT u.id, u.typ, nullif(u.farmer, '')::uuid, nullif(u.plot, '')::uuid, u.agent, u.device, u.captured, u.sealed, u.sigref,
		       u.status, nullif(u.reason, ''), u.results::jsonb, u.tv, nullif(u.err, ''), u.decided
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::uuid[], $7::timestamptz[], $8::bytea[], $9::text[],
		            $10::text[], $11::text[], $12::text[], $13::int[], $14::text[], $15::timestamptz[])
		     AS u(id, typ, farmer, plot, agent, device, captured, sealed, sigref, status, reason, results, tv, err, decided)
		ON CONFLICT (record_id) DO UPDATE SET
		    status = excluded.status, reason = excluded.reason, results = excluded.results,
		    threshold_version = excluded.threshold_version, last_error = excluded.last_error,
		    decided_at = excluded.decided_at, attempts = a.attempts + 1, updated_at = now()
		WHERE a.status = 'pending'`,
		r.id, r.typ, r.farmer, r.plot, r.agent, r.device, r.captured, r.sealed, r.sigref, r.status, r.reason, r.results, r.tv, r.lastErr, r.decided)
	if err != nil {
		return fmt.Errorf("store decisions: %w", err)
	}
	return nil
}

// optionalUUID parses s, or gives nil (SQL NULL) for "".
func optionalUUID(s string) (any, error) {
	if s == "" {
		return nil, nil
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return nil, err
	}
	return [16]byte(id), nil
}

// nullIfEmpty gives nil (SQL NULL) for an empty string, as upsertRecords' nullif does.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// journalRecords appends every verified decision not yet journaled, in one
// Append, and stores where each landed. known holds revisions already
// built from records in memory; the others are rebuilt from what is
// stored. Append is idempotent, so a crash between Append and the update
// only repeats a no-op append.
func (s *Service) journalRecords(ctx context.Context, decided map[string]*Decision, known map[string]ledger.Revision) error {
	var revs []ledger.Revision
	var stored []string
	for id, d := range decided {
		if d.Status != StatusVerified || d.LeafIndex != nil {
			continue
		}
		if rev, ok := known[id]; ok {
			revs = append(revs, rev)
		} else {
			stored = append(stored, id)
		}
	}
	if len(stored) > 0 {
		more, err := s.recordRevisions(ctx, stored)
		if err != nil {
			return err
		}
		revs = append(revs, more...)
	}
	if len(revs) == 0 {
		return nil
	}
	app, err := s.journal.Append(ctx, revs...)
	if apperr.Is(err, apperr.Conflict) {
		// A farmer erased since these were decided: the journal refuses
		// their records; journal the others.
		if kept, ferr := s.withoutErased(ctx, revs); ferr == nil && len(kept) < len(revs) {
			revs = kept
			app, err = s.journal.Append(ctx, revs...)
		}
	}
	if err != nil {
		return fmt.Errorf("journal %d verified records: %w", len(revs), err)
	}
	idx := make([]int64, len(app))
	recs := make([]string, len(app))
	for i, a := range app {
		idx[i], recs[i] = a.LeafIndex, a.RecordID
		decided[a.RecordID].LeafIndex = &idx[i]
	}
	// The record is attested once it has a receipt: its evidence.attested
	// event is recorded with its leaf index, in the same transaction.
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			UPDATE attest.records r SET leaf_index = u.idx, updated_at = now()
			FROM unnest($1::uuid[], $2::bigint[]) AS u(id, idx) WHERE r.record_id = u.id AND r.leaf_index IS NULL
			RETURNING r.record_id::text, r.type, coalesce(r.farmer_id::text, ''), coalesce(r.plot_id::text, ''), r.leaf_index`, recs, idx)
		if err != nil {
			return err
		}
		var evs []events.Event
		now := time.Now().UTC()
		if err := forEach(rows, func(r pgx.Rows) error {
			var d EvidenceData
			if err := r.Scan(&d.RecordID, &d.RecordType, &d.FarmerID, &d.PlotID, &d.LeafIndex); err != nil {
				return err
			}
			scope, ok := events.RecordScope(record.Type(d.RecordType))
			if !ok || d.FarmerID == "" {
				return nil // consent records: told by the consent.* events
			}
			d.Scope, d.ReceiptPath = string(scope), "/ledger/v1/records/"+d.RecordID+"/receipt"
			evs = append(evs, events.Event{ID: events.DeriveID(events.EvidenceAttested, d.RecordID), Type: events.EvidenceAttested,
				FarmerID: d.FarmerID, Scope: scope, OccurredAt: now, Data: d})
			return nil
		}); err != nil {
			return err
		}
		return events.RecordAll(ctx, tx, evs)
	})
	if err != nil {
		return fmt.Errorf("store leaf indexes: %w", err)
	}
	return nil
}

// EvidenceData is the data of an evidence.attested event: ids and the
// receipt's path, never the record's content (the organization reads that
// through the consent gate).
type EvidenceData struct {
	RecordID    string `json:"record_id"`
	RecordType  string `json:"record_type"`
	FarmerID    string `json:"farmer_id"`
	PlotID      string `json:"plot_id,omitempty"`
	Scope       string `json:"scope"`
	LeafIndex   int64  `json:"leaf_index"`
	ReceiptPath string `json:"receipt_path"`
}

// recordRevisions builds the journal revisions of verified records from
// what is stored, for records decided by an earlier call (a retry, a
// review). Every build of a record's revision is byte for byte the same
// (see revision), so a retry appends identical bytes.
func (s *Service) recordRevisions(ctx context.Context, ids []string) ([]ledger.Revision, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT record_id::text, type, sealed_record, captured_at, signature_ref FROM attest.records
		WHERE record_id = ANY($1::uuid[]) AND status = 'verified'`, ids)
	if err != nil {
		return nil, fmt.Errorf("load verified records: %w", err)
	}
	defer rows.Close()
	var revs []ledger.Revision
	for rows.Next() {
		var id, kind, sigref string
		var sealed []byte
		var occurred time.Time
		if err := rows.Scan(&id, &kind, &sealed, &occurred, &sigref); err != nil {
			return nil, fmt.Errorf("scan verified record: %w", err)
		}
		canonical, err := s.unseal(sealed)
		if err != nil {
			return nil, fmt.Errorf("verified record %s: %w", id, err)
		}
		rev, err := s.revision(id, kind, canonical, occurred, sigref)
		if err != nil {
			return nil, err
		}
		revs = append(revs, rev)
	}
	return revs, rows.Err()
}

// revision is the journal revision of a verified record. The journal gets
// the protected record (record.Protected, deterministic): a leaf is forever
// and public to auditors, so it must not carry a farmer's national ID or
// phone. The ledger keeps OccurredAt to the microsecond, as Postgres keeps
// captured_at, so a revision built from memory and one rebuilt from the
// stored row are identical.
func (s *Service) revision(id, kind string, canonical []byte, occurred time.Time, sigref string) (ledger.Revision, error) {
	payload, err := record.Protected(canonical, s.pii)
	if err != nil {
		return ledger.Revision{}, fmt.Errorf("verified record %s: %w", id, err)
	}
	return ledger.Revision{RecordID: id, Kind: kind, Revision: 1, Payload: payload, OccurredAt: occurred, SignatureRef: sigref}, nil
}

// seal closes a record for storage (see unseal).
func (s *Service) seal(canonical []byte) []byte { return s.pii.Encrypt(string(canonical)) }

// unseal opens a record stored with pii.Keys.Encrypt.
func (s *Service) unseal(sealed []byte) ([]byte, error) {
	clear, err := s.pii.Decrypt(sealed)
	if err != nil {
		return nil, fmt.Errorf("unseal record: %w", err)
	}
	return []byte(clear), nil
}
