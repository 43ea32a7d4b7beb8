package ledger

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/ledger/verify"
)

// Routes mounts the journal's read API on g (mounted at /ledger/v1).
// Appends are not exposed: services append in process.
//
// What proves the log is public, so that anyone can audit it: checkpoints,
// consistency proofs, receipts and the leaves (/entries), none of which
// carries a payload — a leaf commits to its payload's SHA-256 only. What a
// farmer said (name, village, plot boundary) is served only by /history,
// and only to callers readPayload allows; with a nil readPayload, to
// nobody.
func (j *Journal) Routes(g *echo.Group, readPayload PayloadAuthorizer) {
	g.GET("/checkpoint", j.handleLatestCheckpoint)
	g.GET("/checkpoints/:size", j.handleCheckpoint)
	g.GET("/records/:id/receipt", j.handleReceipt)               // ?revision=N, ?tree_size=M
	g.GET("/records/:id/history", j.historyHandler(readPayload)) // ?tree_size=N, ?at=RFC3339 time
	g.GET("/proof/consistency", j.handleConsistency)
	g.GET("/entries", j.handleEntries)
}

// PayloadAuthorizer decides whether the caller of a request may read the
// payloads of record recordID and, if so, runs read. It returns an apperr
// Unauthorized error when the caller did not authenticate and Forbidden
// when it did but may not read this record, without calling read. read
// does the reading with tx: the authorizer's own transaction when it has
// one (the consent gate's, so that the access-log row and the read commit
// together), or nil to read with the journal's pool. The composition
// root provides it: operators, and banks and distributors through the
// consent gate.
type PayloadAuthorizer func(c echo.Context, recordID string, read func(ctx context.Context, tx pgx.Tx) error) error

// Allow is a PayloadAuthorizer that lets every caller check accepts read
// with the journal's pool (the operator's token, say).
func Allow(check func(c echo.Context) error) PayloadAuthorizer {
	return func(c echo.Context, _ string, read func(context.Context, pgx.Tx) error) error {
		if err := check(c); err != nil {
			return err
		}
		return read(c.Request().Context(), nil)
	}
}

// noteContentType is how checkpoints are served: the exact signed note.
const noteContentType = "text/plain; charset=utf-8"

// handleLatestCheckpoint answers the newest checkpoint, which says what the
// journal stands behind now: a halted journal stands behind nothing and
// answers 503 with why. Checkpoints by size stay readable, as evidence.
func (j *Journal) handleLatestCheckpoint(c echo.Context) error {
	if err := j.Halted(); err != nil {
		return err
	}
	cp, err := j.LatestCheckpoint(c.Request().Context())
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, noteContentType, cp.Note)
}

func (j *Journal) handleCheckpoint(c echo.Context) error {
	size, err := intParam(c.Param("size"), "size", 1)
	if err != nil {
		return err
	}
	cp, err := j.CheckpointAt(c.Request().Context(), size)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, noteContentType, cp.Note)
}

func (j *Journal) handleReceipt(c echo.Context) error {
	var rev int64
	if s := c.QueryParam("revision"); s != "" {
		var err error
		if rev, err = intParam(s, "revision", 1); err != nil {
			return err
		}
	}
	var size int64
	if s := c.QueryParam("tree_size"); s != "" {
		var err error
		if size, err = intParam(s, "tree_size", 1); err != nil {
			return err
		}
	}
	ctx, id := c.Request().Context(), c.Param("id")
	receipt := func() (*verify.Receipt, error) {
		if size > 0 {
			return j.ReceiptIn(ctx, id, rev, size)
		}
		return j.Receipt(ctx, id, rev)
	}
	r, err := receipt()
	if apperr.Is(err, apperr.NotFound) && j.explain != nil && rev <= 1 {
		why, xerr := j.explain(ctx, id)
		if xerr != nil {
			return xerr
		}
		if why != "" {
			return apperr.Wrap(apperr.Conflict, err, "record %s has no journal entry: %s", id, why)
		}
		// Journaled between the two reads (the deciding module records
		// the leaf only after the entry committed): look again.
		r, err = receipt()
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

// historyResponse is the body of GET /records/{id}/history.
type historyResponse struct {
	RecordID  string           `json:"record_id"`
	Revisions []RecordRevision `json:"revisions"`
}

// historyHandler serves a record's history to callers readPayload
// allows, asking it before anything is looked up: an anonymous caller
// learns nothing, not even whether the record has a history.
func (j *Journal) historyHandler(readPayload PayloadAuthorizer) echo.HandlerFunc {
	return func(c echo.Context) error {
		if readPayload == nil {
			return apperr.Errorf(apperr.Forbidden, "this process serves no payloads")
		}
		var out historyResponse
		err := readPayload(c, c.Param("id"), func(ctx context.Context, tx pgx.Tx) error {
			var asOf AsOf
			if s := c.QueryParam("tree_size"); s != "" {
				n, err := intParam(s, "tree_size", 1)
				if err != nil {
					return err
				}
				asOf.TreeSize = n
			}
			if s := c.QueryParam("at"); s != "" {
				at, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					return apperr.Fields("invalid parameter", apperr.FieldError{Field: "at", Message: "must be an RFC 3339 time"})
				}
				asOf.Time = at
			}
			var q querier = j.pool
			if tx != nil {
				q = tx
			}
			revs, err := j.history(ctx, q, c.Param("id"), asOf)
			out = historyResponse{RecordID: c.Param("id"), Revisions: revs}
			return err
		})
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
}

// consistencyResponse is the body of GET /proof/consistency.
type consistencyResponse struct {
	From  int64          `json:"from"`
	To    int64          `json:"to"`
	Proof []verify.Bytes `json:"proof"`
}

func (j *Journal) handleConsistency(c echo.Context) error {
	from, err := intParam(c.QueryParam("from"), "from", 1)
	if err != nil {
		return err
	}
	to, err := intParam(c.QueryParam("to"), "to", 1)
	if err != nil {
		return err
	}
	p, err := j.ConsistencyProof(c.Request().Context(), from, to)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, consistencyResponse{From: from, To: to, Proof: hashesJSON(p)})
}

// entriesResponse is the body of GET /entries.
type entriesResponse struct {
	Entries []RawEntry `json:"entries"`
}

func (j *Journal) handleEntries(c echo.Context) error {
	start, limit := int64(0), int64(100)
	var err error
	if s := c.QueryParam("start"); s != "" {
		if start, err = intParam(s, "start", 0); err != nil {
			return err
		}
	}
	if s := c.QueryParam("limit"); s != "" {
		if limit, err = intParam(s, "limit", 1); err != nil {
			return err
		}
	}
	es, err := j.Entries(c.Request().Context(), start, limit)
	if err != nil {
		return err
	}
	if es == nil {
		es = []RawEntry{}
	}
	return c.JSON(http.StatusOK, entriesResponse{Entries: es})
}

func hashesJSON(p []tlog.Hash) []verify.Bytes {
	out := make([]verify.Bytes, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

// intParam parses a decimal parameter that must be at least min.
func intParam(s, name string, min int64) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < min {
		return 0, apperr.Fields("invalid parameter", apperr.FieldError{Field: name, Message: "must be an integer ≥ " + strconv.FormatInt(min, 10)})
	}
	return n, nil
}
