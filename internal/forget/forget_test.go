package forget_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/forget"
	"github.com/tani-platform/tani/internal/natsbus"
	"github.com/tani-platform/tani/internal/natsbus/natstest"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
)

func TestDecode(t *testing.T) {
	id, farmer := uuid.NewString(), uuid.NewString()
	t.Run("OK", func(t *testing.T) {
		r, err := forget.Decode([]byte(`{"erasure_id":"` + id + `","farmer_id":"` + strings.ToUpper(farmer) + `","requested_at":"2026-01-02T03:04:05Z"}`))
		if err != nil {
			t.Fatal(err)
		}
		if r.ErasureID != id || r.FarmerID != farmer || !r.RequestedAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
			t.Errorf("got %+v, want the request with the farmer id lower-cased", r)
		}
	})
	for name, data := range map[string]string{
		"ErrNotJSON":       `erase them`,
		"ErrUnknownField":  `{"erasure_id":"` + id + `","farmer_id":"` + farmer + `","name":"Ana"}`,
		"ErrFarmerNotUUID": `{"erasure_id":"` + id + `","farmer_id":"ana"}`,
		"ErrTrailingData":  `{"erasure_id":"` + id + `","farmer_id":"` + farmer + `"} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := forget.Decode([]byte(data)); apperr.CodeOf(err) != apperr.Invalid {
				t.Errorf("got %v, want invalid", err)
			}
		})
	}
}

func TestFarmerOf(t *testing.T) {
	for data, want := range map[string]string{
		`{"id":"r1","payload":{"farmer_id":"ABC-1"}}`: "abc-1",
		`{"id":"r1","payload":{}}`:                    "",
		`{"payload":"not an object"}`:                 "",
		`not json`:                                    "",
	} {
		if got := forget.FarmerOf([]byte(data)); got != want {
			t.Errorf("FarmerOf(%s) = %q, want %q", data, got, want)
		}
	}
	if got := forget.RecordIDOf([]byte(`{"id":"r1","payload":{"farmer_id":"f"}}`)); got != "r1" {
		t.Errorf("RecordIDOf = %q, want r1", got)
	}
}

func publish(t *testing.T, js jetstream.JetStream, subject, farmer string) uint64 {
	t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data, _ = json.Marshal(map[string]any{"id": uuid.NewString(), "payload": map[string]string{"farmer_id": farmer, "name": "Ana " + farmer}})
	ack, err := js.PublishMsg(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func TestPurge(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.MustJetStream(t, natstest.MustServer(t))
	t.Run("OK_EmptyStream", func(t *testing.T) {
		n, err := forget.Purge(ctx, js, natsbus.StreamFarm, []string{"farm.submitted.>"}, forget.IsFarmers("a"))
		if err != nil || n != 0 {
			t.Errorf("got %d, %v; want nothing deleted", n, err)
		}
	})
	a, b := uuid.NewString(), uuid.NewString()
	var mine, theirs []uint64
	for i := range 2500 { // more than one fetch
		switch i % 5 {
		case 0:
			mine = append(mine, publish(t, js, "farm.submitted.plot.mapped", a))
		case 1:
			theirs = append(theirs, publish(t, js, "farm.ingested.plot.mapped", a)) // not a subject scanned here
		default:
			theirs = append(theirs, publish(t, js, "farm.submitted.plot.mapped", b))
		}
	}
	st, err := js.Stream(ctx, natsbus.StreamFarm)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("OK_OnlyTheFarmersOnTheSubjects", func(t *testing.T) {
		n, err := forget.Purge(ctx, js, natsbus.StreamFarm, []string{"farm.submitted.>"}, forget.IsFarmers(a))
		if err != nil {
			t.Fatal(err)
		}
		if n != len(mine) {
			t.Errorf("deleted %d, want %d", n, len(mine))
		}
		for _, seq := range mine {
			if _, err := st.GetMsg(ctx, seq); !errors.Is(err, jetstream.ErrMsgNotFound) {
				t.Fatalf("message %d of the farmer: %v, want it gone", seq, err)
			}
		}
		for _, seq := range theirs {
			if _, err := st.GetMsg(ctx, seq); err != nil {
				t.Fatalf("message %d: %v, want it kept", seq, err)
			}
		}
	})
	t.Run("OK_AgainDeletesNothing", func(t *testing.T) {
		n, err := forget.Purge(ctx, js, natsbus.StreamFarm, []string{"farm.submitted.>"}, forget.IsFarmers(a))
		if err != nil || n != 0 {
			t.Errorf("got %d, %v; want nothing left to delete", n, err)
		}
	})
	t.Run("OK_DeleteOneGoneAlready", func(t *testing.T) {
		if err := forget.Delete(ctx, js, natsbus.StreamFarm, mine[0]); err != nil {
			t.Errorf("deleting a deleted message: %v", err)
		}
	})
}

// TestPurgeBundles: a bundle loses only the farmer's records; the others
// are published again, and the bundle itself is deleted for good.
func TestPurgeBundles(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.MustJetStream(t, natstest.MustServer(t))
	a, b := uuid.NewString(), uuid.NewString()
	rec := func(farmer string) ([]byte, string) {
		id := uuid.NewString()
		data, _ := json.Marshal(map[string]any{"id": id, "payload": map[string]string{"farmer_id": farmer}})
		return data, id
	}
	send := func(farmers ...string) (seq uint64, recs [][]byte) {
		var ids []string
		for _, f := range farmers {
			r, id := rec(f)
			recs, ids = append(recs, r), append(ids, id)
		}
		msgs := natsbus.Bundle("farm.submitted.plot.mapped", recs, ids)
		if len(msgs) != 1 {
			t.Fatalf("%d messages, want one", len(msgs))
		}
		ack, err := js.PublishMsg(ctx, msgs[0])
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence, recs
	}
	mixed, mixedRecs := send(a, b, a, b)
	onlyA, _ := send(a, a)
	onlyB, _ := send(b)
	st, err := js.Stream(ctx, natsbus.StreamFarm)
	if err != nil {
		t.Fatal(err)
	}
	n, err := forget.Purge(ctx, js, natsbus.StreamFarm, []string{"farm.submitted.>"}, forget.IsFarmers(a))
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("deleted %d records, want the farmer's 4", n)
	}
	for _, seq := range []uint64{mixed, onlyA} {
		if _, err := st.GetMsg(ctx, seq); !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Errorf("bundle %d: %v, want it gone", seq, err)
		}
	}
	if _, err := st.GetMsg(ctx, onlyB); err != nil {
		t.Errorf("the other farmer's message %d: %v, want it kept", onlyB, err)
	}
	// What the mixed bundle kept is at the end of the stream, in its order.
	last, err := st.GetLastMsgForSubject(ctx, "farm.submitted.plot.mapped")
	if err != nil {
		t.Fatal(err)
	}
	got, ok := natsbus.Records(last.Header, last.Data)
	if !ok || len(got) != 2 || string(got[0]) != string(mixedRecs[1]) || string(got[1]) != string(mixedRecs[3]) {
		t.Errorf("published again: %q (%s %q), want the other farmer's two records of the mixed bundle", last.Data, natsbus.HeaderRecords, last.Header.Get(natsbus.HeaderRecords))
	}
	if last.Sequence <= onlyB {
		t.Errorf("kept records at %d, want them after every message Purge read (%d)", last.Sequence, onlyB)
	}
	if n, err := forget.Purge(ctx, js, natsbus.StreamFarm, []string{"farm.submitted.>"}, forget.IsFarmers(a)); err != nil || n != 0 {
		t.Errorf("again: %d, %v; want nothing left to delete", n, err)
	}
	if n, err := forget.Purge(ctx, js, natsbus.StreamFarm, []string{"farm.submitted.>"}, forget.IsFarmers(b)); err != nil || n != 3 {
		t.Errorf("the other farmer: %d, %v; want their 3 records", n, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("%d messages left, want none", info.State.Msgs)
	}
}

// owner is a test owner with its erasures table in a fresh database.
func owner(t *testing.T) (forget.Owner, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.MustDB(t)
	if _, err := pool.Exec(context.Background(), `
		CREATE SCHEMA owner;
		CREATE TABLE owner.erasures (
		    erasure_id uuid PRIMARY KEY, farmer_id uuid NOT NULL UNIQUE, started_at timestamptz NOT NULL DEFAULT now(),
		    attempts int NOT NULL DEFAULT 1, last_error text, completed_at timestamptz, erased jsonb, scratch text[])`); err != nil {
		t.Fatal(err)
	}
	return forget.Owner{Name: "test", Table: "owner.erasures", Clear: []string{"scratch"}}, pool
}

func TestOwner_FenceWaitsForTheErasure(t *testing.T) {
	ctx := context.Background()
	o, pool := owner(t)
	r := forget.Request{ErasureID: uuid.NewString(), FarmerID: uuid.NewString()}
	eraseTx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer eraseTx.Rollback(ctx)
	if done, err := o.Begin(ctx, eraseTx, r); err != nil || done {
		t.Fatalf("Begin: %v %v", done, err)
	}
	// A writer about the same farmer, and one about another farmer.
	type result struct {
		erased map[string]bool
		err    error
	}
	fence := func(farmer string) <-chan result {
		out := make(chan result, 1)
		go func() {
			var res result
			res.err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				var err error
				res.erased, err = o.Fence(ctx, tx, []string{farmer, "not-a-uuid"})
				return err
			})
			out <- res
		}()
		return out
	}
	// Farmers share locks by a hash of their id: the other farmer must
	// not share this one's.
	bucketOf := func(id string) int {
		var b int
		if err := pool.QueryRow(ctx, `SELECT hashtext($1) & 63`, id).Scan(&b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	otherFarmer := uuid.NewString()
	for bucketOf(otherFarmer) == bucketOf(r.FarmerID) {
		otherFarmer = uuid.NewString()
	}
	other := <-fence(otherFarmer)
	if other.err != nil || len(other.erased) != 0 {
		t.Fatalf("another farmer's writer: %v %v, want it neither blocked nor refused", other.erased, other.err)
	}
	same := fence(r.FarmerID)
	// It must be waiting on the farmer's lock while the erasure runs.
	polltest.Eventually(t, 30*time.Second, func() error {
		var waiting int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == 1 {
			return nil
		}
		select {
		case res := <-same:
			t.Fatalf("the writer went ahead of the erasure: %v %v", res.erased, res.err)
		default:
		}
		return errors.New("the writer never waited for the farmer's lock")
	})
	if err := eraseTx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	res := <-same
	if res.err != nil || !res.erased[r.FarmerID] {
		t.Errorf("after the erasure committed: %v %v, want the farmer erased", res.erased, res.err)
	}
}

func TestOwner_Handler(t *testing.T) {
	ctx := context.Background()
	o, pool := owner(t)
	_, js := natstest.MustJetStream(t, natstest.MustServer(t))
	request := func(t *testing.T) (forget.Request, jetstream.Msg) {
		t.Helper()
		r := forget.Request{ErasureID: uuid.NewString(), FarmerID: uuid.NewString(), RequestedAt: time.Now().UTC()}
		if err := forget.Publish(ctx, js, r); err != nil {
			t.Fatal(err)
		}
		return r, lastRequest(t, js)
	}
	logger := slog.New(slog.DiscardHandler)
	t.Run("OK_CompletesAndClearsWorkingState", func(t *testing.T) {
		r, msg := request(t)
		calls := 0
		h := o.Handler(pool, func(ctx context.Context, r forget.Request) (any, error) {
			calls++
			return map[string]int{"rows": 3}, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				if _, err := o.Begin(ctx, tx, r); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `UPDATE owner.erasures SET scratch = '{a,b}' WHERE erasure_id = $1`, r.ErasureID)
				return err
			})
		}, logger)
		for range 2 { // a redelivery does nothing
			if err := h(ctx, msg); err != nil {
				t.Fatal(err)
			}
		}
		var erased string
		var scratch []string
		var done bool
		if err := pool.QueryRow(ctx, `SELECT erased::text, scratch, completed_at IS NOT NULL FROM owner.erasures WHERE erasure_id = $1`, r.ErasureID).
			Scan(&erased, &scratch, &done); err != nil {
			t.Fatal(err)
		}
		if calls != 1 || !done || erased != `{"rows": 3}` || scratch != nil {
			t.Errorf("calls %d, done %v, erased %s, scratch %v; want one call, done, the summary kept and the scratch cleared", calls, done, erased, scratch)
		}
	})
	t.Run("ErrFailureIsRetriedNeverDeadLettered", func(t *testing.T) {
		r, msg := request(t)
		h := o.Handler(pool, func(ctx context.Context, r forget.Request) (any, error) {
			if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { _, err := o.Begin(ctx, tx, r); return err }); err != nil {
				return nil, err
			}
			return nil, apperr.Errorf(apperr.Conflict, "the journal refused")
		}, logger)
		err := h(ctx, msg)
		if err == nil || apperr.CodeOf(err) != apperr.Internal {
			t.Fatalf("got %v (%s), want a transient error, which the runner retries", err, apperr.CodeOf(err))
		}
		var last string
		pool.QueryRow(ctx, `SELECT last_error FROM owner.erasures WHERE erasure_id = $1`, r.ErasureID).Scan(&last)
		if !strings.Contains(last, "the journal refused") {
			t.Errorf("last_error = %q, want the failure shown on the status", last)
		}
	})
	t.Run("ErrNotARequest", func(t *testing.T) {
		if _, err := js.Publish(ctx, natsbus.SubjectErasureRequested, []byte(`{"farmer_id":"Ana"}`)); err != nil {
			t.Fatal(err)
		}
		err := o.Handler(pool, func(context.Context, forget.Request) (any, error) { return nil, nil }, logger)(ctx, lastRequest(t, js))
		if apperr.CodeOf(err) != apperr.Invalid {
			t.Errorf("got %v, want invalid", err)
		}
	})
}

// lastRequest delivers the last message on the erasure subject, as the
// owner's consumer would.
func lastRequest(t *testing.T, js jetstream.JetStream) jetstream.Msg {
	t.Helper()
	cons, err := js.OrderedConsumer(context.Background(), natsbus.StreamErasure, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{natsbus.SubjectErasureRequested}, DeliverPolicy: jetstream.DeliverLastPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	msg, ok := <-batch.Messages()
	if !ok {
		t.Fatalf("no request delivered: %v", batch.Error())
	}
	return msg
}
