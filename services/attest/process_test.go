package attest_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tani-platform/tani/internal/pii"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/internal/record"
	"github.com/tani-platform/tani/internal/validate"
	"github.com/tani-platform/tani/ledger"
	mobileapi "github.com/tani-platform/tani/mobile-api"
	"github.com/tani-platform/tani/services/attest"
)

// env is a service on a fresh database with a started journal.
type env struct {
	svc     *attest.Service
	pool    *pgxpool.Pool
	journal *ledger.Journal
}

func mustEnv(tb testing.TB, rules []attest.Rule) *env {
	tb.Helper()
	return mustEnvJS(tb, rules, nil)
}

// mustEnvJS is mustEnv with a JetStream to announce decisions on.
func mustEnvJS(tb testing.TB, rules []attest.Rule, js jetstream.JetStream) *env {
	tb.Helper()
	pool := pgtest.MustDB(tb, ledger.Migrations, identity.Migrations, mobileapi.Migrations, attest.Migrations, events.Migrations)
	j, err := ledger.New(ledger.Config{Origin: "test.tani.local/ledger", DataDir: tb.TempDir(), CheckpointInterval: ledger.DefaultCheckpointInterval}, pool, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	if err := j.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	keys, err := pii.New(make([]byte, 64))
	if err != nil {
		tb.Fatal(err)
	}
	svc := mustAttest(tb, attest.Config{}, attest.Deps{Pool: pool, JS: js, Journal: j, PII: keys, Logger: slog.New(slog.DiscardHandler), Rules: rules})
	return &env{svc: svc, pool: pool, journal: j}
}

// agent is an enrolled agent and device, written as mobile-api would.
type agent struct {
	id, device string
	key        ed25519.PrivateKey
}

func (e *env) mustAgent(tb testing.TB, region string) agent {
	tb.Helper()
	ctx := context.Background()
	pub, key, _ := ed25519.GenerateKey(nil)
	a := agent{id: uuid.NewString(), device: uuid.NewString(), key: key}
	org := uuid.NewString()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO identity.organizations (id, name, kind) VALUES ($1, $2, 'field')`, []any{org, "org " + org}},
		{`INSERT INTO mobile.agents (id, organization_id, username, password_hash, name, region) VALUES ($1, $2, $4, 'x', 'Agent', $3)`, []any{a.id, org, region, "u" + a.id}},
		{`INSERT INTO mobile.devices (id, agent_id, public_key, name) VALUES ($1, $2, $3, 'phone')`, []any{a.device, a.id, []byte(pub)}},
	} {
		if _, err := e.pool.Exec(ctx, q.sql, q.args...); err != nil {
			tb.Fatalf("enroll agent: %v", err)
		}
	}
	return a
}

// input signs a record as the agent's phone does and checks it as ingest
// does.
func (a agent) input(tb testing.TB, typ string, lon, lat float64, payload map[string]any) attest.Input {
	tb.Helper()
	raw, _ := json.Marshal(payload)
	env := record.Envelope{ID: uuid.NewString(), Type: record.Type(typ), CapturedAt: time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), DeviceID: a.device,
		Location: &record.Location{Lat: &lat, Lon: &lon, AccuracyM: 4}, Payload: raw}
	_, signed, err := record.Sign(a.key, env)
	if err != nil {
		tb.Fatal(err)
	}
	canonical, _ := record.Canonical(signed)
	rec, problems := record.Check(validate.New(), canonical, time.Now())
	e, p := rec.Env, rec.Payload
	if len(problems) > 0 {
		tb.Fatalf("record does not check: %v", problems)
	}
	return attest.Input{Env: e, Payload: p, Canonical: canonical, AgentID: a.id, DeviceID: a.device, ReceivedAt: time.Now()}
}

func square(lon, lat, d float64) map[string]any {
	return map[string]any{"type": "Polygon", "coordinates": [][][2]float64{{{lon, lat}, {lon + d, lat}, {lon + d, lat - d}, {lon, lat - d}, {lon, lat}}}}
}

func day(n int) string { return time.Now().AddDate(0, 0, n).Format(time.DateOnly) }

// farm returns a consistent set of records for a new farmer with a plot of
// side d degrees at lon, lat: registration, plot, planting, harvest, sale.
func farm(tb testing.TB, a agent, lon, lat, d float64, nationalID, phone string) []attest.Input {
	farmer, plot := uuid.NewString(), uuid.NewString()
	areaHa := d * 110.6 * d * 109.7 * 100 // near 7°S, 1° ≈ 110.6 km lat, 109.7 km lon
	at := func(typ string, p map[string]any) attest.Input { return a.input(tb, typ, lon+d/2, lat-d/2, p) }
	return []attest.Input{
		at("farmer.registered", map[string]any{"farmer_id": farmer, "name": "Siti", "national_id": nationalID, "phone": phone,
			"village": "Sukamaju", "gender": "female", "birth_year": 1980}),
		at("plot.mapped", map[string]any{"farmer_id": farmer, "plot_id": plot, "boundary": square(lon, lat, d),
			"declared_area": map[string]any{"value": areaHa, "unit": "ha"}, "tenure": "owned", "gps_accuracy_m": 3.5, "mock_location": false}),
		at("crop.planted", map[string]any{"farmer_id": farmer, "plot_id": plot, "crop": "rice", "planted_on": day(-110), "expected_harvest_on": day(-5)}),
		at("harvest.recorded", map[string]any{"farmer_id": farmer, "plot_id": plot, "crop": "rice",
			"quantity": map[string]any{"value": 5 * areaHa, "unit": "t"}, "quality_grade": "A", "harvested_on": day(-4)}),
		at("sale.recorded", map[string]any{"farmer_id": farmer, "buyer": "KUD", "crop": "rice",
			"quantity": map[string]any{"value": 4 * areaHa, "unit": "t"}, "price": map[string]any{"amount": 1000, "currency": "IDR"}, "sold_on": day(-2)}),
	}
}

var seq int

func nationalID() string {
	seq++
	return fmt.Sprintf("3374%012d", time.Now().UnixNano()%1e9*1000+int64(seq))
}

// phone is unique within the process (up to 10^7 calls): a clock-based
// number wrapped around within a long benchmark and made two farmers share
// a phone, which the rules rightly flag.
func phone() string {
	seq++
	return fmt.Sprintf("+62812%07d", seq%1e7)
}

func mustProcess(tb testing.TB, e *env, ins ...attest.Input) []attest.Decision {
	tb.Helper()
	ds, err := e.svc.Process(context.Background(), ins)
	if err != nil {
		tb.Fatalf("process: %v", err)
	}
	if len(ds) != len(ins) {
		tb.Fatalf("got %d decisions, want %d", len(ds), len(ins))
	}
	return ds
}

func verdict(d attest.Decision, rule string) attest.Verdict {
	for _, r := range d.Results {
		if r.Rule == rule {
			return r.Verdict
		}
	}
	return ""
}

// TestProcess_SignaturesCheckedTogether: Process checks a batch's device
// signatures at once; a record whose signature is another record's is
// rejected for it, and the records beside it still pass the check.
func TestProcess_SignaturesCheckedTogether(t *testing.T) {
	e := mustEnv(t, nil)
	a := e.mustAgent(t, "Central Java")
	ins := farm(t, a, 110.60, -7.35, 0.001, nationalID(), phone())
	ins = append(ins, farm(t, a, 110.62, -7.37, 0.001, nationalID(), phone())...)
	ins[6].Env.Signature = ins[7].Env.Signature // a valid signature, of another record
	for i, d := range mustProcess(t, e, ins...) {
		got := verdict(d, "device.signature")
		switch {
		case i == 6 && (d.Status != attest.StatusRejected || got != attest.Reject):
			t.Errorf("record with another's signature: %s, device.signature %q; want rejected by it", d.Status, got)
		case i != 6 && got != attest.Pass:
			t.Errorf("%s %d: device.signature %q (%s), want pass", ins[i].Env.Type, i, got, d.Reason)
		}
	}
}

func TestProcess_ConsistentFarmIsVerifiedAndJournaled(t *testing.T) {
	e := mustEnv(t, nil)
	a := e.mustAgent(t, "Central Java")
	ctx := context.Background()
	ins := farm(t, a, 110.40, -7.25, 0.001, nationalID(), phone())
	for i, d := range mustProcess(t, e, ins...) {
		if d.Status != attest.StatusVerified {
			t.Errorf("%s: got %s (%s), want verified", ins[i].Env.Type, d.Status, d.Reason)
		}
		if d.LeafIndex == nil {
			t.Errorf("%s: verified but not journaled", ins[i].Env.Type)
		}
	}
	// The journaled payload is exactly the signed record, so a receipt
	// proves what the device signed.
	rec, err := e.journal.Receipt(ctx, ins[1].Env.ID, 1)
	if err != nil {
		t.Fatalf("receipt: %v", err)
	}
	res, err := rec.Verify(e.journal.Verifier())
	if err != nil {
		t.Fatalf("receipt does not verify: %v", err)
	}
	if got, want := res.Entry.PayloadHash, sha256.Sum256(ins[1].Canonical); got != want {
		t.Errorf("journaled payload hash %x, want the canonical record's %x", got, want)
	}
	if res.Entry.Kind != "plot.mapped" || !strings.Contains(res.Entry.SignatureRef, a.device) {
		t.Errorf("got kind %q signature %q, want plot.mapped signed by device %s", res.Entry.Kind, res.Entry.SignatureRef, a.device)
	}
	prov, err := e.svc.Provenance(ctx, ins[1].Env.ID)
	if err != nil {
		t.Fatal(err)
	}
	var area *attest.Provenance
	for i := range prov {
		if prov[i].Attribute == "area_ha" {
			area = &prov[i]
		}
	}
	if area == nil || area.Method != "gps_walk" || area.ExpiresAt == nil || area.ExpiresAt.Before(time.Now().AddDate(0, 11, 0)) {
		t.Errorf("got area provenance %+v, want gps_walk valid for two seasons", area)
	}

	t.Run("OK_EvidenceAttestedEvents", func(t *testing.T) {
		// One evidence.attested per verified record, for the farmer's
		// consented organizations (no recipient named), ids and the
		// receipt only.
		for _, in := range ins {
			scope, ok := events.RecordScope(in.Env.Type)
			var n int
			var data map[string]any
			var org *string
			var gotScope, farmer string
			err := e.pool.QueryRow(ctx, `SELECT count(*) OVER (), data, organization_id::text, scope, farmer_id::text FROM events.outbox
				WHERE type = 'evidence.attested' AND data->>'record_id' = $1`, in.Env.ID).Scan(&n, &data, &org, &gotScope, &farmer)
			if !ok {
				if err == nil {
					t.Errorf("%s: evidence event for a record without a scope", in.Env.Type)
				}
				continue
			}
			if err != nil || n != 1 {
				t.Fatalf("%s: %d evidence events (%v), want 1", in.Env.Type, n, err)
			}
			if org != nil || gotScope != string(scope) || farmer != in.Payload.Farmer() || data["receipt_path"] != "/ledger/v1/records/"+in.Env.ID+"/receipt" ||
				data["leaf_index"] == nil || len(data) > 7 {
				t.Errorf("%s: event to %v scope %s farmer %s data %v", in.Env.Type, org, gotScope, farmer, data)
			}
		}
	})
	t.Run("OK_RedeliveryIsANoOp", func(t *testing.T) {
		var events0 int
		e.pool.QueryRow(ctx, `SELECT count(*) FROM events.outbox`).Scan(&events0)
		defer func() {
			var events1 int
			e.pool.QueryRow(ctx, `SELECT count(*) FROM events.outbox`).Scan(&events1)
			if events1 != events0 {
				t.Errorf("redelivery recorded %d more events", events1-events0)
			}
		}()
		before, _ := e.journal.LatestCheckpoint(ctx)
		var size int64
		e.pool.QueryRow(ctx, `SELECT size FROM ledger.tree`).Scan(&size)
		again := mustProcess(t, e, ins...)
		var after int64
		e.pool.QueryRow(ctx, `SELECT size FROM ledger.tree`).Scan(&after)
		if after != size {
			t.Errorf("tree grew from %d to %d on redelivery, want unchanged", size, after)
		}
		for _, d := range again {
			if d.Status != attest.StatusVerified || d.Decision != 1 {
				t.Errorf("got %s decision %d, want verified decision 1", d.Status, d.Decision)
			}
		}
		_ = before
	})
}

func TestProcess_OverlapOnRealPolygons(t *testing.T) {
	e := mustEnv(t, nil)
	a := e.mustAgent(t, "Central Java")
	first := farm(t, a, 110.40, -7.25, 0.001, nationalID(), phone())[:2]
	mustProcess(t, e, first...)

	tests := []struct {
		name string
		lon  float64
		want attest.Verdict
	}{
		{"Flag_HalfOverlap", 110.3995, attest.Flag},     // shares half of the first plot
		{"Pass_AdjacentTouching", 110.401, attest.Pass}, // shares only an edge
		{"Pass_FarAway", 110.5, attest.Pass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ins := farm(t, a, tt.lon, -7.25, 0.001, nationalID(), phone())[:2]
			ds := mustProcess(t, e, ins...)
			if got := verdict(ds[1], "plot.overlap"); got != tt.want {
				t.Errorf("got plot.overlap %s (%s), want %s", got, ds[1].Reason, tt.want)
			}
		})
	}
	t.Run("Flag_BothOfOneBatch", func(t *testing.T) {
		x := farm(t, a, 110.6, -7.25, 0.001, nationalID(), phone())[:2]
		y := farm(t, a, 110.6003, -7.2503, 0.001, nationalID(), phone())[:2]
		ds := mustProcess(t, e, append(x, y...)...)
		for _, i := range []int{1, 3} {
			if got := verdict(ds[i], "plot.overlap"); got != attest.Flag {
				t.Errorf("plot %d: got %s, want flag", i, got)
			}
		}
	})
	t.Run("OK_OverlapUsesGiSTIndex", func(t *testing.T) {
		var plan string
		rows, err := e.pool.Query(context.Background(), `EXPLAIN SELECT plot_id FROM attest.plots o
			WHERE ST_Intersects(ST_GeogFromText('SRID=4326;POLYGON((110.4 -7.25,110.401 -7.25,110.401 -7.251,110.4 -7.251,110.4 -7.25))'), o.boundary)`)
		if err != nil {
			t.Fatal(err)
		}
		e.pool.Exec(context.Background(), `SET enable_seqscan = off`)
		for rows.Next() {
			var line string
			rows.Scan(&line)
			plan += line + "\n"
		}
		if !strings.Contains(plan, "plots_boundary") && !strings.Contains(plan, "Seq Scan") {
			t.Errorf("plan neither uses plots_boundary nor scans: %s", plan)
		}
	})
}

func TestProcess_DuplicateIdentityAcrossAgents(t *testing.T) {
	e := mustEnv(t, nil)
	a, b := e.mustAgent(t, "Central Java"), e.mustAgent(t, "Central Java")
	nid := nationalID()
	mustProcess(t, e, farm(t, a, 110.4, -7.25, 0.001, nid, phone())[0])
	tests := []struct {
		name      string
		nid, ph   string
		want      attest.Verdict
		explained string
	}{
		{"Flag_SameNationalIDOtherAgent", " " + strings.ToLower(nid) + " ", phone(), attest.Flag, "by national_id"},
		{"Pass_Distinct", nationalID(), phone(), attest.Pass, "no other farmer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := farm(t, b, 110.7, -7.25, 0.001, strings.TrimSpace(tt.nid), tt.ph)[0]
			d := mustProcess(t, e, in)[0]
			if got := verdict(d, "farmer.duplicate"); got != tt.want || (tt.want == attest.Flag && !strings.Contains(d.Reason, tt.explained)) {
				t.Errorf("got %s (%s), want %s", got, d.Reason, tt.want)
			}
		})
	}
}

// erroringRules are the rules and one more that always errs, so that every
// record is left pending.
func erroringRules() []attest.Rule {
	return append(attest.Rules(), attest.Rule{Name: "flaky", Version: 1, Check: func(*attest.Case) (attest.Verdict, string, error) {
		return "", "", fmt.Errorf("evidence store unreachable")
	}})
}

// mustFixed is a service with the standard rules on e's database and
// journal: e's records decided again once the erroring rule is gone.
func (e *env) mustFixed(tb testing.TB) *attest.Service {
	return mustAttest(tb, attest.Config{}, attest.Deps{Pool: e.pool, Journal: e.journal, PII: mustPII(tb), Logger: slog.New(slog.DiscardHandler)})
}

func TestProcess_ErroringRuleKeepsRecordPending(t *testing.T) {
	e := mustEnv(t, erroringRules())
	a := e.mustAgent(t, "Central Java")
	ctx := context.Background()
	in := farm(t, a, 110.4, -7.25, 0.001, nationalID(), phone())[0]
	for attempt := 1; attempt <= 2; attempt++ {
		d := mustProcess(t, e, in)[0]
		if d.Status != attest.StatusPending || d.LeafIndex != nil {
			t.Fatalf("attempt %d: got %s leaf %v, want pending and not journaled", attempt, d.Status, d.LeafIndex)
		}
	}
	var status, reason string
	var attempts int
	if err := e.pool.QueryRow(ctx, `SELECT s.status, s.reason, r.attempts FROM attest.record_status s JOIN attest.records r ON r.record_id = s.id WHERE s.id = $1`, in.Env.ID).
		Scan(&status, &reason, &attempts); err != nil {
		t.Fatal(err)
	}
	if status != "pending" || !strings.Contains(reason, "evidence store unreachable") || attempts != 2 {
		t.Errorf("got status %s reason %q attempts %d, want pending with the error after 2 attempts", status, reason, attempts)
	}
	// Once the rule works again, the retried record is decided.
	fixed := e.mustFixed(t)
	d, err := fixed.Process(ctx, []attest.Input{in})
	if err != nil {
		t.Fatal(err)
	}
	if d[0].Status != attest.StatusVerified || d[0].LeafIndex == nil {
		t.Errorf("after the fix: got %s leaf %v, want verified and journaled", d[0].Status, d[0].LeafIndex)
	}
}

func mustPII(tb testing.TB) *pii.Keys {
	k, err := pii.New(make([]byte, 64))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// mustAttest is attest.New, failing the test on error.
func mustAttest(tb testing.TB, cfg attest.Config, d attest.Deps) *attest.Service {
	tb.Helper()
	svc, err := attest.New(cfg, d)
	if err != nil {
		tb.Fatal(err)
	}
	return svc
}

// TestProcess_StoredAlikeByCopyAndByUpsert: a batch of records attest
// never saw is stored by COPY; a batch holding one record stored before
// (pending, retried) falls back to INSERT … ON CONFLICT. Both must store
// the same row for the same kind of record and decision, and the retried
// record must count its attempt.
func TestProcess_StoredAlikeByCopyAndByUpsert(t *testing.T) {
	e := mustEnv(t, erroringRules())
	a := e.mustAgent(t, "Central Java")
	ctx := context.Background()
	retried := farm(t, a, 110.4, -7.25, 0.001, nationalID(), phone())[0]
	if d := mustProcess(t, e, retried)[0]; d.Status != attest.StatusPending {
		t.Fatalf("got %s, want the record pending", d.Status)
	}
	fixed := e.mustFixed(t)
	byCopy := farm(t, a, 110.5, -7.25, 0.001, nationalID(), phone())
	byUpsert := farm(t, a, 110.6, -7.25, 0.001, nationalID(), phone())
	for _, batch := range [][]attest.Input{byCopy, append([]attest.Input{retried}, byUpsert...)} {
		if _, err := fixed.Process(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}

	// row is what a record's row says, less what differs by record.
	row := func(in attest.Input) string {
		t.Helper()
		var got string
		err := e.pool.QueryRow(ctx, `
			SELECT concat_ws(' | ', type, status, coalesce(reason, '<null>'), (SELECT jsonb_agg(r->>'rule' || '=' || (r->>'verdict')) FROM jsonb_array_elements(results) r),
			       threshold_version, coalesce(last_error, '<null>'), attempts, decision, published,
			       farmer_id IS NULL, plot_id IS NULL, length(sealed_record) > 0, captured_at = $2,
			       decided_at IS NOT NULL AND decided_at BETWEEN now() - interval '1 minute' AND now() + interval '1 minute')
			FROM attest.records WHERE record_id = $1`, in.Env.ID, in.Env.Captured()).Scan(&got)
		if err != nil {
			t.Fatalf("%s: %v", in.Env.Type, err)
		}
		return got
	}
	for i := range byCopy {
		if c, u := row(byCopy[i]), row(byUpsert[i]); c != u {
			t.Errorf("%s stored differently:\n by COPY   %s\n by upsert %s", byCopy[i].Env.Type, c, u)
		}
	}
	if got := row(retried); !strings.HasPrefix(got, "farmer.registered | verified | <null> |") || !strings.Contains(got, "| <null> | 2 | 1 | 0 |") {
		t.Errorf("retried record: got %s, want verified after 2 attempts, its error cleared", got)
	}
}
