// Package deadletter is the operators' view of the DEAD stream: list the
// messages consumers refused, with the reason, and replay one to its
// original subject once the cause is fixed (a device enrolled late, a bug
// deployed away). It never deletes a dead letter without first having its
// replay acknowledged by JetStream.
package deadletter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/record"
)

// Letter is one dead message as an operator sees it. Its content is
// shown only in protected form: a farm record as record.Protected stores
// it (national ID and phone replaced by their keyed hashes), with any
// other member named like them redacted too; content that is not JSON is
// shown only by size and hash, as it may be a record cut short.
type Letter struct {
	Seq      uint64          `json:"seq"`
	Subject  string          `json:"subject"` // where it was going
	Consumer string          `json:"consumer"`
	Class    string          `json:"class,omitempty"` // invalid, conflict, gave_up
	Reason   string          `json:"reason"`
	DeadAt   time.Time       `json:"dead_at"`
	MsgID    string          `json:"msg_id,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"` // the protected content, when it is JSON
	Bytes    int             `json:"data_bytes"`     // the content's size
	SHA256   string          `json:"data_sha256"`    // the content's hash (hex), to match it elsewhere
}

// Page is a page of dead letters.
type Page struct {
	Letters []Letter `json:"letters"`
	// After is passed back as ?after= for the next page; 0 when done.
	After uint64 `json:"after"`
}

// Service lists and replays dead letters.
type Service struct {
	js     jetstream.JetStream
	pii    *pii.Keys
	logger *slog.Logger
}

// New returns the service; it does no I/O. keys protect the farmers' PII
// in listings.
func New(js jetstream.JetStream, keys *pii.Keys, logger *slog.Logger) *Service {
	return &Service{js: js, pii: keys, logger: logger}
}

// Routes mounts the operators' endpoints on the /admin/v1 group.
func (s *Service) Routes(admin *echo.Group) {
	admin.GET("/deadletters", s.list)
	admin.POST("/deadletters/:seq/replay", s.replay)
}

// List returns up to limit letters with a sequence above after.
func (s *Service) List(ctx context.Context, after uint64, limit int) (Page, error) {
	st, err := s.js.Stream(ctx, natsbus.StreamDead)
	if err != nil {
		return Page{}, fmt.Errorf("dead-letter stream: %w", err)
	}
	page := Page{Letters: []Letter{}}
	seq := after + 1
	for len(page.Letters) < limit {
		// next_by_subj skips the gaps replays leave behind.
		msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(natsbus.SubjectDeadPrefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return page, nil
		}
		if err != nil {
			return Page{}, fmt.Errorf("read dead letter %d: %w", seq, err)
		}
		page.Letters = append(page.Letters, s.letterOf(msg))
		page.After = msg.Sequence
		seq = msg.Sequence + 1
	}
	return page, nil
}

func (s *Service) letterOf(msg *jetstream.RawStreamMsg) Letter {
	sum := sha256.Sum256(msg.Data)
	return Letter{
		Seq:      msg.Sequence,
		Subject:  msg.Header.Get(natsbus.HeaderDeadSubject),
		Consumer: msg.Header.Get(natsbus.HeaderDeadConsumer),
		Class:    msg.Header.Get(natsbus.HeaderDeadClass),
		Reason:   msg.Header.Get(natsbus.HeaderDeadReason),
		DeadAt:   msg.Time,
		MsgID:    msg.Header.Get(jetstream.MsgIDHeader),
		Data:     s.protect(msg.Data),
		Bytes:    len(msg.Data),
		SHA256:   hex.EncodeToString(sum[:]),
	}
}

// protect returns data as it may be shown to operators, or nil. A record
// that record.Protected understands is shown as it is stored; then, as a
// dead letter may be anything (a record with a national ID in another
// case, or in an unknown member), every member whose name is one of the
// PII members in any case is redacted wherever it is.
func (s *Service) protect(data []byte) json.RawMessage {
	if !utf8.Valid(data) || !json.Valid(data) {
		return nil
	}
	if canonical, err := record.Canonical(data); err == nil {
		if protected, err := record.Protected(canonical, s.pii); err == nil {
			data = protected
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	out, err := json.Marshal(redact(v))
	if err != nil {
		return nil
	}
	return out
}

// piiMembers are the members that hold a farmer's PII in clear.
var piiMembers = []string{"national_id", "phone"}

// redact replaces the value of every PII member, at any depth, with
// "[redacted]".
func redact(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, m := range v {
			if slices.ContainsFunc(piiMembers, func(p string) bool { return strings.EqualFold(k, p) }) {
				v[k] = "[redacted]"
			} else {
				v[k] = redact(m)
			}
		}
	case []any:
		for i, m := range v {
			v[i] = redact(m)
		}
	}
	return v
}

// Replay republishes a dead letter to its original subject, waits for the
// ack, then removes it from the DEAD stream. Consumers are idempotent, so a
// replay that is refused again simply dies again, with the new reason.
func (s *Service) Replay(ctx context.Context, seq uint64) (string, error) {
	st, err := s.js.Stream(ctx, natsbus.StreamDead)
	if err != nil {
		return "", fmt.Errorf("dead-letter stream: %w", err)
	}
	msg, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", apperr.Errorf(apperr.NotFound, "no dead letter %d (already replayed?)", seq)
	}
	if err != nil {
		return "", fmt.Errorf("read dead letter %d: %w", seq, err)
	}
	subject := msg.Header.Get(natsbus.HeaderDeadSubject)
	if subject == "" {
		return "", apperr.Errorf(apperr.Conflict, "dead letter %d does not name its original subject", seq)
	}
	out := nats.NewMsg(subject)
	out.Data = msg.Data
	for k, v := range msg.Header {
		switch k {
		case natsbus.HeaderDeadReason, natsbus.HeaderDeadConsumer, natsbus.HeaderDeadSubject, natsbus.HeaderDeadAt,
			natsbus.HeaderDeadClass, natsbus.HeaderDeadNotice, jetstream.MsgIDHeader:
		default:
			out.Header[k] = v
		}
	}
	// A fresh message ID: the original may still be inside JetStream's
	// de-duplication window, which would silently drop the replay.
	out.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("replay:%d:%s", seq, msg.Header.Get(jetstream.MsgIDHeader)))
	out.Header.Set(HeaderReplayOf, strconv.FormatUint(seq, 10))
	if _, err := s.js.PublishMsg(ctx, out); err != nil {
		return "", apperr.Wrap(apperr.Unavailable, err, "replay not acknowledged; the dead letter is kept")
	}
	if err := st.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", fmt.Errorf("replayed dead letter %d but could not remove it: %w", seq, err)
	}
	s.logger.InfoContext(ctx, "dead letter replayed", "seq", seq, "subject", subject)
	return subject, nil
}

// HeaderReplayOf marks a replayed message with the dead letter it came from.
const HeaderReplayOf = "Tani-Replay-Of"

func (s *Service) list(c echo.Context) error {
	after, err := uintParam(c, "after", 0)
	if err != nil {
		return err
	}
	limit, err := uintParam(c, "limit", 50)
	if err != nil {
		return err
	}
	if limit < 1 || limit > 500 {
		return apperr.Fields("invalid limit", apperr.FieldError{Field: "limit", Message: "must be from 1 to 500"})
	}
	page, err := s.List(c.Request().Context(), after, int(limit))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}

func (s *Service) replay(c echo.Context) error {
	seq, err := strconv.ParseUint(c.Param("seq"), 10, 64)
	if err != nil || seq == 0 {
		return apperr.Fields("invalid sequence", apperr.FieldError{Field: "seq", Message: "must be a positive integer"})
	}
	subject, err := s.Replay(c.Request().Context(), seq)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"seq": seq, "replayed_to": subject})
}

func uintParam(c echo.Context, name string, def uint64) (uint64, error) {
	v := c.QueryParam(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, apperr.Fields("invalid "+name, apperr.FieldError{Field: name, Message: "must be a non-negative integer"})
	}
	return n, nil
}
