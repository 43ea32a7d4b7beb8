package mobileapi

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/natsbus"
)

// Refused is the status of a record a consumer dead-lettered after
// mobile-api had acknowledged it: ingest or attest refused it (invalid,
// conflicting) or gave up on it after repeated failures. The reason says
// which. It is not final if an operator replays the record and it goes
// through: the status then follows the record again.
const Refused = "refused"

// RefusalsConsumer is mobile-api's durable consumer of the DEAD stream.
const RefusalsConsumer = "mobile-refusals"

// refusalMetrics counts refusals after acknowledgement: the operators'
// alert that an agent was told "accepted" and then "refused".
func refusalMetrics(reg prometheus.Registerer) *prometheus.CounterVec {
	m := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tani_records_refused_after_ack_total",
		Help: "Farm records dead-lettered after mobile-api acknowledged them, by the consumer that refused them and why (invalid, conflict, gave_up).",
	}, []string{"stage", "reason_class"})
	reg.MustRegister(m)
	return m
}

// handleDead projects one dead letter into mobile.refusals. It never
// refuses a dead letter: whatever it holds is recorded (a message naming
// no record with a NULL record_id, for operators), so its only errors are
// transient and the consumer retries them forever. The row is keyed by the
// dead letter's message ID, so a redelivery changes nothing and counts
// nothing.
func (s *Service) handleDead(ctx context.Context, msg jetstream.Msg) error {
	md, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("dead letter metadata: %w", err)
	}
	h := msg.Headers()
	subject := cmp.Or(h.Get(natsbus.HeaderDeadSubject), strings.TrimPrefix(msg.Subject(), natsbus.SubjectDeadPrefix))
	stage := cmp.Or(h.Get(natsbus.HeaderDeadConsumer), "unknown")
	reason := h.Get(natsbus.HeaderDeadReason)
	class, notice := h.Get(natsbus.HeaderDeadClass), h.Get(natsbus.HeaderDeadNotice)
	switch {
	case class == natsbus.ClassInvalid || class == natsbus.ClassConflict || class == natsbus.ClassGaveUp:
	case strings.HasPrefix(reason, "gave up"):
		class = natsbus.ClassGaveUp
	case strings.HasPrefix(reason, string(apperr.Conflict)+":"):
		class = natsbus.ClassConflict
	default:
		class = natsbus.ClassInvalid
	}
	if notice == "" {
		// A dead letter from before notices existed: its reason may carry
		// internal detail, so the agent gets a pointer instead.
		notice = fmt.Sprintf("refused by %s; an operator can tell you why", stage)
	}
	refusedAt := md.Timestamp
	if at, err := time.Parse(time.RFC3339Nano, h.Get(natsbus.HeaderDeadAt)); err == nil {
		refusedAt = at
	}
	letterID := cmp.Or(h.Get(jetstream.MsgIDHeader), fmt.Sprintf("DEAD#%d", md.Sequence.Stream))
	recordID, recordType := recordOf(msg.Data())
	// A dead letter may hold anything; Postgres stores no NUL or invalid
	// UTF-8, and an insert that can never succeed would be retried forever.
	letterID, subject, stage, notice, reason = storable(letterID), storable(subject), storable(stage), storable(notice), storable(reason)
	if recordType != nil {
		t := storable(*recordType)
		recordType = &t
	}
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO mobile.refusals (letter_id, record_id, record_type, subject, stage, class, notice, reason, dead_seq, refused_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (letter_id) DO NOTHING`,
		letterID, recordID, recordType, subject, stage, class, notice, reason, int64(md.Sequence.Stream), refusedAt)
	if err != nil {
		return fmt.Errorf("record refusal %s: %w", letterID, err)
	}
	if tag.RowsAffected() == 1 {
		s.refused.WithLabelValues(stageLabel(stage), class).Inc()
		s.logger.WarnContext(ctx, "record refused after acknowledgement", "record_id", recordID, "stage", stage, "class", class, "reason", reason)
	}
	return nil
}

// storable is s as Postgres text can hold it: valid UTF-8 without NUL.
func storable(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// stageLabel bounds the metric's stage label to consumer-like names, so
// that a malformed dead letter cannot mint label values.
func stageLabel(stage string) string {
	if len(stage) > 40 || strings.IndexFunc(stage, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return "other"
	}
	return stage
}

// recordOf reads the id and type of the farm record a dead letter carries,
// as the consumer that refused it read them; nil when it carries none.
func recordOf(data []byte) (id, typ *string) {
	var env struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if json.Unmarshal(data, &env) != nil {
		return nil, nil
	}
	if u, err := uuid.Parse(env.ID); err == nil && len(env.ID) == 36 {
		s := u.String()
		id = &s
	}
	if env.Type != "" && len(env.Type) <= 100 {
		typ = &env.Type
	}
	return id, typ
}

// Refusal is a refused record as an operator sees it.
type Refusal struct {
	ID         int64     `json:"id"`
	LetterID   string    `json:"letter_id"` // the dead letter's message ID, or DEAD#<sequence>
	RecordID   *string   `json:"record_id"`
	RecordType *string   `json:"record_type"`
	AgentID    *string   `json:"agent_id"`
	DeviceID   *string   `json:"device_id"`
	Subject    string    `json:"subject"`
	Stage      string    `json:"stage"`
	Class      string    `json:"class"`
	Notice     string    `json:"notice"` // what the agent is shown
	Reason     string    `json:"reason"` // the full reason
	DeadSeq    int64     `json:"dead_seq"`
	RefusedAt  time.Time `json:"refused_at"`
	RecordedAt time.Time `json:"recorded_at"`
}

// RefusalsPage is a page of refusals, oldest first.
type RefusalsPage struct {
	Refusals []Refusal `json:"refusals"`
	// After is passed back as ?after= for the next page; 0 when done.
	After int64 `json:"after"`
}

// listRefusals answers GET /admin/v1/refusals: every record refused after
// it was acknowledged, with the agent and device that sent it, so an
// operator can follow up (fix the cause, then replay the dead letter
// named by dead_seq).
func (s *Service) listRefusals(c echo.Context) error {
	after, err := strconv.ParseInt(cmp.Or(c.QueryParam("after"), "0"), 10, 64)
	if err != nil || after < 0 {
		return apperr.Fields("invalid after", apperr.FieldError{Field: "after", Message: "must be a non-negative integer"})
	}
	limit, err := strconv.Atoi(cmp.Or(c.QueryParam("limit"), "50"))
	if err != nil || limit < 1 || limit > 500 {
		return apperr.Fields("invalid limit", apperr.FieldError{Field: "limit", Message: "must be an integer from 1 to 500"})
	}
	stage := c.QueryParam("stage")
	rows, err := s.pool.Query(c.Request().Context(), `
		SELECT f.id, f.letter_id, f.record_id::text, f.record_type, r.agent_id::text, r.device_id::text, f.subject, f.stage, f.class,
		       f.notice, f.reason, f.dead_seq, f.refused_at, f.recorded_at
		FROM mobile.refusals f LEFT JOIN mobile.received r ON r.id = f.record_id
		WHERE f.id > $1 AND ($2 = '' OR f.stage = $2)
		ORDER BY f.id LIMIT $3`, after, stage, limit+1)
	if err != nil {
		return fmt.Errorf("list refusals: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Refusal, error) {
		var f Refusal
		return f, r.Scan(&f.ID, &f.LetterID, &f.RecordID, &f.RecordType, &f.AgentID, &f.DeviceID, &f.Subject, &f.Stage, &f.Class,
			&f.Notice, &f.Reason, &f.DeadSeq, &f.RefusedAt, &f.RecordedAt)
	})
	if err != nil {
		return fmt.Errorf("list refusals: %w", err)
	}
	page := RefusalsPage{Refusals: list}
	if page.Refusals == nil {
		page.Refusals = []Refusal{}
	}
	if len(list) > limit {
		page.Refusals = list[:limit]
		page.After = list[limit-1].ID
	}
	return c.JSON(http.StatusOK, page)
}
