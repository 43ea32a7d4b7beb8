package mobileapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
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

// pending is a record that passed validation.
type pending struct {
	index     int
	env       record.Envelope
	canonical []byte
	hash      [32]byte
}

// sync accepts a batch. Each record is accepted, a duplicate, or rejected
// with field errors; if none is accepted or duplicate, the whole request is
// a 400 carrying every record's field errors.
func (s *Service) sync(c echo.Context) error {
	var req SyncRequest
	if err := httpserver.DecodeJSON(c, &req); err != nil {
		return err
	}
	if err := c.Validate(&req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	results := make([]SyncResult, len(req.Records))
	valid := s.validate(c, req.Records, results)
	if err := s.classify(ctx, valid, results); err != nil {
		return err
	}
	var publish []pending
	for _, p := range valid {
		if results[p.index].Status == Accepted {
			publish = append(publish, p)
		}
	}
	if err := s.publish(ctx, publish); err != nil {
		return err
	}
	if err := s.remember(ctx, publish); err != nil {
		return err
	}
	if err := allRejected(results); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, SyncResponse{Results: results})
}

// validate decodes and checks each record, filling rejections in results.
func (s *Service) validate(c echo.Context, raws []json.RawMessage, results []SyncResult) []pending {
	now := time.Now()
	seen := map[string]int{} // id -> index in valid
	var valid []pending
	for i, raw := range raws {
		reject := func(fields ...apperr.FieldError) { results[i] = SyncResult{Status: Rejected, Errors: fields} }
		var env record.Envelope
		if err := validate.Unmarshal(bytes.NewReader(raw), &env); err != nil {
			reject(fieldErrors(err)...)
			continue
		}
		results[i].ID = env.ID
		if err := c.Validate(&env); err != nil {
			reject(fieldErrors(err)...)
			results[i].ID = env.ID
			continue
		}
		var fields []apperr.FieldError
		if !record.KnownType(env.Type) {
			fields = append(fields, apperr.FieldError{Field: "type", Message: fmt.Sprintf("unknown record type %q", env.Type)})
		}
		if env.Captured().After(now.Add(record.MaxClockSkew)) {
			fields = append(fields, apperr.FieldError{Field: "captured_at", Message: "is in the future"})
		}
		if len(env.Payload) == 0 || env.Payload[0] != '{' {
			fields = append(fields, apperr.FieldError{Field: "payload", Message: "must be a JSON object"})
		}
		if len(fields) > 0 {
			reject(fields...)
			results[i].ID = env.ID
			continue
		}
		canonical, err := record.Canonical(raw)
		if err != nil {
			reject(apperr.FieldError{Field: "body", Message: err.Error()})
			continue
		}
		p := pending{index: i, env: env, canonical: canonical, hash: record.Hash(canonical)}
		if j, ok := seen[env.ID]; ok {
			if valid[j].hash == p.hash {
				results[i] = SyncResult{ID: env.ID, Status: Duplicate}
			} else {
				results[i] = SyncResult{ID: env.ID, Status: Rejected, Errors: []apperr.FieldError{{Field: "id", Message: "appears twice in this batch with different content"}}}
			}
			continue
		}
		seen[env.ID] = len(valid)
		valid = append(valid, p)
		results[i] = SyncResult{ID: env.ID, Status: Accepted}
	}
	return valid
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
	rows, err := s.pool.Query(ctx, `SELECT id::text, content_hash FROM mobile.received WHERE id = ANY($1::uuid[])`, ids)
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
// them. The record id is the message ID, so a retried batch is de-duplicated.
func (s *Service) publish(ctx context.Context, batch []pending) error {
	if len(batch) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	acks := make([]jetstream.PubAckFuture, len(batch))
	for i, p := range batch {
		msg := nats.NewMsg(natsbus.SubjectSubmittedPrefix + p.env.Type)
		msg.Data = p.canonical
		msg.Header.Set(jetstream.MsgIDHeader, p.env.ID)
		f, err := s.js.PublishMsgAsync(msg)
		if err != nil {
			return apperr.Wrap(apperr.Unavailable, err, "the record queue is unavailable; retry later")
		}
		acks[i] = f
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return apperr.Wrap(apperr.Unavailable, err, "the record queue did not confirm the batch; retry later")
		case <-ctx.Done():
			return apperr.Wrap(apperr.Unavailable, ctx.Err(), "the record queue did not confirm the batch in time; retry later")
		}
	}
	return nil
}

// remember records what was acknowledged, after JetStream has it. If this
// fails the client gets a 5xx and retries; the republish is de-duplicated.
func (s *Service) remember(ctx context.Context, batch []pending) error {
	if len(batch) == 0 {
		return nil
	}
	ids := make([]string, len(batch))
	types := make([]string, len(batch))
	hashes := make([][]byte, len(batch))
	for i, p := range batch {
		ids[i], types[i], hashes[i] = p.env.ID, p.env.Type, p.hash[:]
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO mobile.received (id, type, content_hash)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])
		ON CONFLICT (id) DO NOTHING`, ids, types, hashes)
	if err != nil {
		return fmt.Errorf("remember received records: %w", err)
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

// fieldErrors extracts field errors from a decoding or validation error.
func fieldErrors(err error) []apperr.FieldError {
	if e, ok := apperr.As(err); ok && len(e.Fields) > 0 {
		return e.Fields
	}
	return []apperr.FieldError{{Field: "body", Message: err.Error()}}
}
