package mobileapi

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/postgres"
	"github.com/tani-platform/tani/internal/record"
)

// SyncRequest is a batch of records captured offline.
type SyncRequest struct {
	Records []json.RawMessage `json:"records" validate:"required,min=1,max=500"`
}

// Outcomes of one record in a batch.
const (
	Accepted  = "accepted"  // durable in JetStream; will be ingested
	Duplicate = "duplicate" // already received with the same content; nothing to do
	Rejected  = "rejected"  // refused; see errors; nothing stored
)

// SyncResult is the outcome of one record, in request order.
type SyncResult struct {
	ID     string              `json:"id,omitempty"`
	Status string              `json:"status"`
	Errors []apperr.FieldError `json:"errors,omitempty"`
}

// SyncResponse answers a batch record by record.
type SyncResponse struct {
	Results []SyncResult `json:"results"`
}

// pending is a record that passed every check.
type pending struct {
	index     int
	env       record.Envelope
	payload   record.Payload
	canonical []byte
	hash      [32]byte
	rec       *record.Record    // as checked, for the memo
	key       ed25519.PublicKey // its signature verified under this key
}

// agentView is what a batch's payloads are checked against: which of the
// batch's farmers the agent may serve.
type agentView struct {
	id     string
	mine   map[string]bool // farmers assigned to this agent
	taken  map[string]bool // farmers assigned to someone else only
	otps   map[string]bool // consent codes used by earlier records of the batch
	erased forget.Farmers  // farmers who asked to be forgotten
}

type deviceKey struct {
	key     ed25519.PublicKey
	revoked bool
}

// sync accepts a batch from an authenticated agent. Each record is
// accepted, a duplicate, or rejected with field errors; if none is accepted
// or duplicate, the whole request is a 400 carrying every record's errors.
func (s *Service) sync(c echo.Context) error {
	req, err := readBatch(c)
	if err != nil {
		return err
	}
	if err := c.Validate(&req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	results := make([]SyncResult, len(req.Records))
	valid, err := s.check(ctx, auth.ClaimsOf(c).Subject, req.Records, results)
	if err != nil {
		return err
	}
	if err := s.classify(ctx, valid, results); err != nil {
		return err
	}
	publish := make([]pending, 0, len(valid))
	for _, p := range valid {
		if results[p.index].Status == Accepted {
			publish = append(publish, p)
		}
	}
	// Remembered before publishing: the consumer may have the message
	// before the publish returns.
	for _, p := range publish {
		s.memo.Put(p.rec, p.key)
	}
	if err := s.publish(ctx, publish); err != nil {
		return err
	}
	if err := s.remember(ctx, auth.ClaimsOf(c).Subject, publish); err != nil {
		return err
	}
	if err := allRejected(results); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, SyncResponse{Results: results})
}

// check runs every per-record check, filling rejections in results, and
// returns the records that passed. Cheap checks come first, so that a
// record costs little before it is known to come from one of the agent's
// devices: the strict parse into canonical form and the envelope, then
// the device signature over those canonical bytes, and only then the
// payload (read from the same canonical bytes, so the farmer checked here
// is the farmer ingest stores) with its geometry, then the assignment.
func (s *Service) check(ctx context.Context, agentID string, raws []json.RawMessage, results []SyncResult) ([]pending, error) {
	now := time.Now()
	devices, err := s.loadDevices(ctx, agentID)
	if err != nil {
		return nil, err
	}
	type checked struct {
		rec  record.Record
		key  ed25519.PublicKey
		errs []apperr.FieldError
	}
	all := make([]checked, len(raws))
	// Decoded records of the agent's devices have their signatures
	// checked together (record.Keys.Verify), then only the signed ones
	// cost payload work.
	signed := make([]*record.Record, 0, len(raws))
	keys := make([]ed25519.PublicKey, 0, len(raws))
	at := make([]int, 0, len(raws))
	for i, raw := range raws {
		rec, errs := record.Decode(s.validator, raw, now)
		all[i] = checked{rec: rec, errs: errs}
		if errs != nil {
			continue
		}
		key, errs := deviceKeyOf(devices, rec.Env.DeviceID)
		if errs != nil {
			all[i].errs = errs
			continue
		}
		all[i].key = key
		signed, keys, at = append(signed, &all[i].rec), append(keys, key), append(at, i)
	}
	for j, err := range s.keys.Verify(signed, keys) {
		if err != nil {
			all[at[j]].errs = []apperr.FieldError{{Field: "signature", Message: err.Error()}}
		}
	}
	var farmers []string
	for i := range all {
		if all[i].errs != nil {
			continue
		}
		if all[i].errs = all[i].rec.CheckPayload(s.validator, now); all[i].errs == nil {
			farmers = append(farmers, all[i].rec.Payload.Farmer())
		}
	}
	view, err := s.loadAssignments(ctx, agentID, farmers)
	if err != nil {
		return nil, err
	}
	if view.erased, err = s.erasedFarmers(ctx, farmers); err != nil {
		return nil, err
	}
	seen := make(map[string]int, len(all)) // id -> index in valid
	valid := make([]pending, 0, len(all))
	for i, ch := range all {
		env := ch.rec.Env
		results[i].ID = env.ID
		errs := ch.errs
		if errs == nil {
			if errs, err = s.authorize(ctx, view, env, ch.rec.Payload); err != nil {
				return nil, err
			}
		}
		if len(errs) > 0 {
			results[i] = SyncResult{ID: env.ID, Status: Rejected, Errors: errs}
			continue
		}
		p := pending{index: i, env: env, payload: ch.rec.Payload, canonical: ch.rec.Canonical, hash: record.Hash(ch.rec.Canonical), rec: &all[i].rec, key: ch.key}
		if j, ok := seen[env.ID]; ok {
			if valid[j].hash == p.hash {
				results[i] = SyncResult{ID: env.ID, Status: Duplicate}
			} else {
				results[i] = SyncResult{ID: env.ID, Status: Rejected, Errors: []apperr.FieldError{{Field: "id", Message: "appears twice in this batch with different content"}}}
			}
			continue
		}
		if reg, ok := ch.rec.Payload.(*record.FarmerRegistered); ok {
			view.mine[reg.FarmerID] = true // later records of this batch may be about this farmer
		}
		seen[env.ID] = len(valid)
		valid = append(valid, p)
		results[i].Status = Accepted
	}
	return valid, nil
}

// deviceKeyOf returns the key of the agent's device that a record names,
// if it is enrolled to the agent and not revoked.
func deviceKeyOf(devices map[string]deviceKey, deviceID string) (ed25519.PublicKey, []apperr.FieldError) {
	dev, ok := devices[deviceID]
	switch {
	case !ok:
		return nil, []apperr.FieldError{{Field: "device_id", Message: "is not a device enrolled to you"}}
	case dev.revoked:
		return nil, []apperr.FieldError{{Field: "device_id", Message: "was revoked; records it signs are refused"}}
	}
	return dev.key, nil
}

// authorize checks that the agent serves the farmer, and a consent's
// one-time code.
func (s *Service) authorize(ctx context.Context, view *agentView, env record.Envelope, payload record.Payload) ([]apperr.FieldError, error) {
	farmer := payload.Farmer()
	if view.erased.Has(farmer) {
		return []apperr.FieldError{{Field: "payload.farmer_id", Message: ErasedMessage}}, nil
	}
	if env.Type == record.TypeFarmerRegistered {
		if view.taken[farmer] {
			return []apperr.FieldError{{Field: "payload.farmer_id", Message: "is registered by another agent"}}, nil
		}
	} else if !view.mine[farmer] {
		return []apperr.FieldError{{Field: "payload.farmer_id", Message: "is not a farmer assigned to you"}}, nil
	}
	if consent, ok := payload.(*record.ConsentGranted); ok {
		ok, err := s.checkOTP(ctx, env.ID, farmer, PurposeConsent, consent.OTPChallengeID, consent.OTPCode)
		if err != nil {
			return nil, err
		}
		if !ok || view.otps[consent.OTPChallengeID] {
			return []apperr.FieldError{{Field: "payload.otp_code", Message: "does not match an unexpired, unused code sent to this farmer"}}, nil
		}
		view.otps[consent.OTPChallengeID] = true
	}
	switch p := payload.(type) {
	case *record.LoanApplied, *record.LoanAccepted, *record.RepaymentCollected:
		return s.authorizeLoan(ctx, view, env, payload)
	case *record.OrderPlaced:
		return s.checkOrder(ctx, p)
	case *record.DeliveryConfirmed:
		ok, err := s.checkOTP(ctx, env.ID, farmer, PurposeDelivery, p.OTPChallengeID, p.OTPCode)
		if err != nil {
			return nil, err
		}
		if !ok || view.otps[p.OTPChallengeID] {
			return []apperr.FieldError{{Field: "payload.otp_code", Message: "does not match an unexpired, unused delivery code sent to this farmer"}}, nil
		}
		if errs, err := s.checkDelivery(ctx, p); err != nil || len(errs) > 0 {
			return errs, err
		}
		view.otps[p.OTPChallengeID] = true
	}
	return s.checkAnswer(ctx, env, payload)
}

// loadDevices returns the agent's devices by id.
func (s *Service) loadDevices(ctx context.Context, agentID string) (map[string]deviceKey, error) {
	devices := map[string]deviceKey{}
	rows, err := s.pool.Query(ctx, `SELECT id::text, public_key, revoked_at IS NOT NULL FROM mobile.devices WHERE agent_id = $1`, agentID)
	if err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	for rows.Next() {
		var id string
		var key []byte
		var revoked bool
		if err := rows.Scan(&id, &key, &revoked); err != nil {
			return nil, err
		}
		devices[id] = deviceKey{key: key, revoked: revoked}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load devices: %w", err)
	}
	return devices, nil
}

// loadAssignments returns which of the batch's farmers the agent may serve.
func (s *Service) loadAssignments(ctx context.Context, agentID string, farmers []string) (*agentView, error) {
	v := &agentView{id: agentID, mine: map[string]bool{}, taken: map[string]bool{}, otps: map[string]bool{}}
	// A farmer is this agent's if assigned, or if a supervisor sent the
	// agent on a second visit (attest's open visit tasks): the visiting
	// agent's own record is what corroborates the first one.
	rows, err := s.pool.Query(ctx, `
		SELECT farmer_id::text, bool_or(mine) FROM (
		    SELECT farmer_id, agent_id = $1 AS mine FROM mobile.assignments WHERE farmer_id = ANY($2::text[]::uuid[])
		    UNION ALL
		    SELECT farmer_id, true FROM attest.visit_tasks WHERE agent_id = $1 AND farmer_id = ANY($2::text[]::uuid[])
		) f GROUP BY farmer_id`, agentID, farmers)
	if err != nil {
		return nil, fmt.Errorf("load assignments: %w", err)
	}
	for rows.Next() {
		var farmer string
		var mine bool
		if err := rows.Scan(&farmer, &mine); err != nil {
			return nil, err
		}
		v.mine[farmer] = mine
		v.taken[farmer] = !mine
	}
	return v, rows.Err()
}

// assigned reports whether the agent serves the farmer.
func (s *Service) assigned(ctx context.Context, agentID, farmerID string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mobile.assignments WHERE agent_id = $1 AND farmer_id = $2)`, agentID, farmerID).Scan(&ok)
	return ok, err
}

// classify marks records already received as duplicates, or as conflicts
// when the same id came with different content (the original is kept).
func (s *Service) classify(ctx context.Context, valid []pending, results []SyncResult) error {
	if len(valid) == 0 {
		return nil
	}
	ids := make([]string, len(valid))
	for i, p := range valid {
		ids[i] = p.env.ID
	}
	rows, err := s.pool.Query(ctx, `SELECT id::text, content_hash FROM mobile.received WHERE id = ANY($1::text[]::uuid[])`, ids)
	if err != nil {
		return fmt.Errorf("look up received records: %w", err)
	}
	known := map[string][]byte{}
	for rows.Next() {
		var id string
		var hash []byte
		if err := rows.Scan(&id, &hash); err != nil {
			return fmt.Errorf("scan received record: %w", err)
		}
		known[id] = hash
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("look up received records: %w", err)
	}
	for _, p := range valid {
		hash, ok := known[p.env.ID]
		switch {
		case !ok:
		case bytes.Equal(hash, p.hash[:]):
			results[p.index].Status = Duplicate
		default:
			results[p.index] = SyncResult{ID: p.env.ID, Status: Rejected, Errors: []apperr.FieldError{{
				Field: "id", Message: "was already received with different content; the original is kept"}}}
		}
	}
	return nil
}

// publish sends every record and waits until JetStream has acked all of
// them. The records of one type travel together, in bundles
// (natsbus.Bundle): JetStream's cost is per message. A bundle's message ID
// is derived from its records' ids, a lone record's is its id, so a
// retried batch is de-duplicated; past the de-duplication window, ingest's
// unique key on the record id makes a repeat a no-op.
func (s *Service) publish(ctx context.Context, batch []pending) error {
	if len(batch) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	byType := map[record.Type][]pending{}
	var types []record.Type // in the order the batch first names them
	for _, p := range batch {
		if _, seen := byType[p.env.Type]; !seen {
			types = append(types, p.env.Type)
		}
		byType[p.env.Type] = append(byType[p.env.Type], p)
	}
	var msgs []*nats.Msg
	for _, t := range types {
		records, ids := make([][]byte, len(byType[t])), make([]string, len(byType[t]))
		for i, p := range byType[t] {
			records[i], ids[i] = p.canonical, p.env.ID
		}
		msgs = append(msgs, natsbus.Bundle(natsbus.SubjectSubmittedPrefix+string(t), records, ids)...)
	}
	if _, err := natsbus.PublishAll(ctx, s.js, msgs); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return apperr.Wrap(apperr.Unavailable, err, "the record queue did not confirm the batch in time; retry later")
		}
		return apperr.Wrap(apperr.Unavailable, err, "the record queue did not confirm the batch; retry later")
	}
	return nil
}

// remember records what was acknowledged, after JetStream has it: the
// received rows, the media they reference, the farmers the agent just
// registered, the consent codes used. If it fails the client gets a 5xx
// and retries; the republish is de-duplicated and every statement here is
// idempotent. Records about a farmer erased since they were checked are
// not remembered (see fenceErased).
func (s *Service) remember(ctx context.Context, agentID string, batch []pending) error {
	if len(batch) == 0 {
		return nil
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		batch, err := s.fenceErased(ctx, tx, batch)
		if err != nil || len(batch) == 0 {
			return err
		}
		return rememberIn(ctx, tx, agentID, batch)
	})
}

// receivedColumns are what rememberReceived writes of a mobile.received
// row (received_at is the transaction's clock), in its order.
var receivedColumns = []string{"id", "type", "content_hash", "device_id", "agent_id", "farmer_id"}

// rememberReceived records the batch in mobile.received. classify left
// out what was received before, so the batch is almost always new and
// goes in by one COPY (postgres.CopyNew); only a record a concurrent
// /sync of the same device remembered first fails it, and the batch then
// takes the INSERT … ON CONFLICT DO NOTHING it always took before.
func rememberReceived(ctx context.Context, tx pgx.Tx, agentID string, batch []pending) error {
	agent, err := uuid.Parse(agentID)
	if err != nil {
		return fmt.Errorf("remember received records: agent %q: %w", agentID, err)
	}
	rows := make([][]any, len(batch))
	for i, p := range batch {
		id, err1 := uuid.Parse(p.env.ID)
		device, err2 := uuid.Parse(p.env.DeviceID)
		farmer, err3 := uuid.Parse(p.payload.Farmer())
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("remember received record %s: %w", p.env.ID, err)
		}
		// [16]byte, not uuid.UUID: see copyNew in services/ingest.
		rows[i] = []any{[16]byte(id), string(p.env.Type), p.hash[:], [16]byte(device), [16]byte(agent), [16]byte(farmer)}
	}
	switch err := postgres.CopyNew(ctx, tx, pgx.Identifier{"mobile", "received"}, receivedColumns, rows); {
	case err == nil:
		return nil
	case postgres.Code(err) != postgres.CodeUniqueViolation:
		return fmt.Errorf("remember received records: %w", err)
	}
	var ids, types, devices, farmers []string
	var hashes [][]byte
	for _, p := range batch {
		ids, types, devices = append(ids, p.env.ID), append(types, string(p.env.Type)), append(devices, p.env.DeviceID)
		farmers, hashes = append(farmers, p.payload.Farmer()), append(hashes, p.hash[:])
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO mobile.received (id, type, content_hash, device_id, agent_id, farmer_id)
		SELECT id, type, hash, device, $5, farmer FROM unnest($1::text[]::uuid[], $2::text[], $3::bytea[], $4::text[]::uuid[], $6::text[]::uuid[]) AS r(id, type, hash, device, farmer)
		ON CONFLICT (id) DO NOTHING`, ids, types, hashes, devices, agentID, farmers); err != nil {
		return fmt.Errorf("remember received records: %w", err)
	}
	return nil
}

// rememberIn writes what remember records, in tx.
func rememberIn(ctx context.Context, tx pgx.Tx, agentID string, batch []pending) error {
	var newFarmers, otps, otpRecords, mediaRecords, media []string
	for _, p := range batch {
		for _, h := range record.MediaHashes(p.payload) {
			mediaRecords, media = append(mediaRecords, p.env.ID), append(media, h)
		}
		switch pl := p.payload.(type) {
		case *record.FarmerRegistered:
			newFarmers = append(newFarmers, pl.FarmerID)
		case *record.ConsentGranted:
			otps, otpRecords = append(otps, pl.OTPChallengeID), append(otpRecords, p.env.ID)
		case *record.LoanAccepted:
			otps, otpRecords = append(otps, pl.OTPChallengeID), append(otpRecords, p.env.ID)
		case *record.DeliveryConfirmed:
			otps, otpRecords = append(otps, pl.OTPChallengeID), append(otpRecords, p.env.ID)
		}
	}
	if err := rememberReceived(ctx, tx, agentID, batch); err != nil {
		return err
	}
	// The statements below have nothing to do in most batches: only what
	// has rows costs a round trip.
	if len(media) > 0 {
		if _, err := tx.Exec(ctx, `
			INSERT INTO mobile.received_media (record_id, sha256) SELECT * FROM unnest($1::text[]::uuid[], $2::text[])
			ON CONFLICT DO NOTHING`, mediaRecords, media); err != nil {
			return fmt.Errorf("remember referenced media: %w", err)
		}
	}
	if len(newFarmers) > 0 {
		if _, err := tx.Exec(ctx, `
			INSERT INTO mobile.assignments (farmer_id, agent_id) SELECT unnest($1::text[]::uuid[]), $2 ON CONFLICT DO NOTHING`, newFarmers, agentID); err != nil {
			return fmt.Errorf("assign registered farmers: %w", err)
		}
	}
	if len(otps) > 0 {
		if _, err := tx.Exec(ctx, `
			UPDATE mobile.otp_challenges o SET used_by = u.record FROM unnest($1::text[]::uuid[], $2::text[]::uuid[]) AS u(id, record)
			WHERE o.id = u.id AND o.used_by IS NULL`, otps, otpRecords); err != nil {
			return fmt.Errorf("consume one-time codes: %w", err)
		}
	}
	return nil
}

// allRejected turns a batch in which nothing was accepted into one 400 that
// lists every record's field errors as records[i].field.
func allRejected(results []SyncResult) error {
	var fields []apperr.FieldError
	for i, r := range results {
		if r.Status != Rejected {
			return nil
		}
		for _, f := range r.Errors {
			fields = append(fields, apperr.FieldError{Field: fmt.Sprintf("records[%d].%s", i, f.Field), Message: f.Message})
		}
	}
	return apperr.Fields("no record in the batch was accepted", fields...)
}
