package lending_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/internal/consent"
	"github.com/tani-platform/tani/internal/httpserver"
	"github.com/tani-platform/tani/internal/identity"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger"
	"github.com/tani-platform/tani/services/lending"
)

// clock is a settable clock for the service (offers expiring, loans
// falling due).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is the lending service on a fresh database with every schema, a
// started journal, the identity directory authenticating /bank/v1 and the
// consent gate, behind a real echo server. Farmers' attested data is
// seeded straight into the public tables that ingest and attest own (see
// farmerSeed), as those services would leave it.
type env struct {
	tb      testing.TB
	pool    *pgxpool.Pool
	journal *ledger.Journal
	dir     *identity.Directory
	svc     *lending.Service
	url     string
	clock   *clock
	vouch   *recordingIssuer
}

// mustEnv starts the environment; opts change the service's Deps (a
// vouchers chain instead of the recording issuer).
func mustEnv(tb testing.TB, opts ...func(*lending.Deps)) *env {
	tb.Helper()
	return mustEnvOn(tb, pgtest.MustDatabase(tb, app.Migrations()[1:]...), tb.TempDir(), opts...)
}

// mustEnvOn starts the environment on an existing migrated database, with
// the journal's key pair kept in dataDir (the benchmarks reuse a seeded
// book across runs; see benchKeepDB).
func mustEnvOn(tb testing.TB, db, dataDir string, opts ...func(*lending.Deps)) *env {
	tb.Helper()
	pool := pgtest.MustPool(tb, db)
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	j, err := ledger.New(ledger.Config{Origin: "test.tani.local/ledger", DataDir: dataDir, CheckpointInterval: ledger.DefaultCheckpointInterval}, pool, logger)
	if err != nil {
		tb.Fatal(err)
	}
	if err := j.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	dir, err := identity.New(identity.Config{DefaultKeyTTL: 24 * time.Hour}, identity.Deps{Pool: pool, Logger: logger})
	if err != nil {
		tb.Fatal(err)
	}
	clk := &clock{t: time.Now().UTC()}
	vouch := &recordingIssuer{}
	deps := lending.Deps{Pool: pool, Gate: consent.NewGate(pool), Journal: j, Logger: logger, Now: clk.Now, Vouchers: vouch}
	for _, o := range opts {
		o(&deps)
	}
	svc, err := lending.New(lending.Config{}, deps)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httpserver.New(httpserver.Config{BodyLimit: "1M", ReadHeaderTimeout: 10 * time.Second, BodyReadTimeout: 30 * time.Second, BodyMinRate: 256}, logger, prometheus.NewRegistry())
	svc.Routes(httpserver.Router{
		Bank:   srv.Echo.Group("/bank/v1", dir.Require(identity.Bank)),
		Public: srv.Echo.Group("/bank/v1"),
		Admin:  srv.Echo.Group("/admin/v1"),
	})
	srv.Open()
	srv.SetReady(true)
	hs := httptest.NewServer(srv)
	tb.Cleanup(hs.Close)
	return &env{tb: tb, pool: pool, journal: j, dir: dir, svc: svc, url: hs.URL, clock: clk, vouch: vouch}
}

// bank is an organization of kind bank with an API key for every scope.
type bank struct {
	ID    string
	Token string
	e     *env
}

func (e *env) bank(name string) *bank {
	e.tb.Helper()
	id := uuid.NewString()
	ctx := context.Background()
	if _, err := e.pool.Exec(ctx, `INSERT INTO identity.organizations (id, name, kind) VALUES ($1, $2, 'bank')`, id, name+" "+id[:8]); err != nil {
		e.tb.Fatal(err)
	}
	_, token, err := e.dir.CreateAPIKey(ctx, identity.NewAPIKey{OrganizationID: id, Name: "test", ExpiresAt: time.Now().Add(24 * time.Hour)})
	if err != nil {
		e.tb.Fatal(err)
	}
	return &bank{ID: id, Token: token, e: e}
}

// do sends a request as the bank and decodes a JSON answer into out (if
// not nil); it returns the status and the raw body.
func (b *bank) do(method, path string, in, out any) (int, []byte) {
	b.e.tb.Helper()
	return b.e.do(method, path, b.Token, in, out)
}

func (e *env) do(method, path, token string, in, out any) (int, []byte) {
	e.tb.Helper()
	var body io.Reader
	if in != nil {
		raw, ok := in.([]byte)
		if !ok {
			var err error
			if raw, err = json.Marshal(in); err != nil {
				e.tb.Fatal(err)
			}
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.tb.Fatal(err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			e.tb.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

// must is do expecting want.
func (b *bank) must(want int, method, path string, in, out any) []byte {
	b.e.tb.Helper()
	status, raw := b.do(method, path, in, out)
	if status != want {
		b.e.tb.Fatalf("%s %s = %d %s, want %d", method, path, status, raw, want)
	}
	return raw
}

// product creates a rice product with the given policy.
func (b *bank) product(name string, approve, decline *int, style string) lending.Product {
	b.e.tb.Helper()
	var p lending.Product
	b.must(http.StatusCreated, "POST", "/bank/v1/products", map[string]any{
		"name": name, "crops": []string{"rice", "maize"}, "currency": "IDR", "min_amount": 100_000_00, "max_amount": 50_000_000_00,
		"fee_bps": 100, "interest_bps": 1800, "tenor_days": 240, "grace_days": 30, "repayment_style": style, "ltv_bps": 5000,
		"auto_approve_min_score": approve, "auto_decline_below_score": decline, "offer_valid_days": 14, "voucher_categories": []string{"seed", "fertilizer"},
	}, &p)
	return p
}

func intp(n int) *int { return &n }

// recordingIssuer stands in for the vouchers chaincode client in this
// package's tests (the chaincode and its client come from another
// branch): it keeps what it was asked and answers as the chaincode does,
// idempotently by id.
type recordingIssuer struct {
	mu     sync.Mutex
	issued map[string]lending.VoucherIssue
	fail   error
}

func (r *recordingIssuer) IssueVoucher(_ context.Context, v lending.VoucherIssue) (lending.VoucherIssued, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return lending.VoucherIssued{}, r.fail
	}
	if r.issued == nil {
		r.issued = map[string]lending.VoucherIssue{}
	}
	if old, ok := r.issued[v.ID]; ok && fmt.Sprint(old) != fmt.Sprint(v) {
		return lending.VoucherIssued{}, fmt.Errorf("a voucher with this id exists with other content")
	}
	r.issued[v.ID] = v
	return lending.VoucherIssued{ID: v.ID, TxID: "tx-" + v.ID[:8], Status: "issued"}, nil
}
