package vouchers_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tani-platform/tani/internal/apperr"
	"github.com/tani-platform/tani/internal/polltest"
	"github.com/tani-platform/tani/internal/postgres/pgtest"
	"github.com/tani-platform/tani/ledger/vouchers"
)

// TestProjection_Devnet follows a devnet's voucher events into Postgres,
// survives a restart, agrees with a second projector running at once,
// and is rebuilt from the events after the table is wiped.
func TestProjection_Devnet(t *testing.T) { runProjection(t, devnetChain(t), true) }

// TestProjection_Fabric is the same against the suite's real Fabric
// network, whose chain also holds other tests' vouchers.
func TestProjection_Fabric(t *testing.T) { runProjection(t, fabricChain(t), false) }

// runProjector runs p until the test ends.
func runProjector(t *testing.T, p *vouchers.Projection) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.Run(ctx); err != nil {
			t.Errorf("projection: %v", err)
		}
	}()
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	return stop
}

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("TANI_TEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// waitProjected waits until the projection holds voucher id in status.
func waitProjected(t *testing.T, pool *pgxpool.Pool, id, status string) {
	t.Helper()
	polltest.Eventually(t, 30*time.Second, func() error {
		p, err := vouchers.Get(context.Background(), pool, id)
		if err != nil {
			return err
		}
		if p.Status != status {
			return fmt.Errorf("voucher %s projected as %s, want %s", id, p.Status, status)
		}
		return nil
	})
}

// projectionMatchesChain fails unless every projected voucher is what the
// chain holds, and every id in want is projected.
func projectionMatchesChain(t *testing.T, c chain, pool *pgxpool.Pool, want []string, exact bool) {
	t.Helper()
	ctx := context.Background()
	var projected []vouchers.Projected
	for after := ""; ; {
		page, next, err := vouchers.List(ctx, pool, vouchers.Filter{After: after, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		projected = append(projected, page...)
		if next == "" {
			break
		}
		after = next
	}
	seen := map[string]bool{}
	for _, p := range projected {
		if seen[p.ID] {
			t.Errorf("voucher %s listed twice", p.ID)
		}
		seen[p.ID] = true
		onChain, err := c.client.Get(ctx, p.ID)
		if err != nil {
			t.Fatalf("chain Get %s: %v", p.ID, err)
		}
		if diff := cmp.Diff(*onChain, p.Voucher); diff != "" {
			t.Errorf("projected voucher %s differs from the chain (-chain +projection):\n%s", p.ID, diff)
		}
	}
	for _, id := range want {
		if !seen[id] {
			t.Errorf("voucher %s is on the chain but not projected", id)
		}
	}
	if exact && len(projected) != len(want) {
		t.Errorf("projected %d vouchers, the chain holds %d", len(projected), len(want))
	}
}

func runProjection(t *testing.T, c chain, exact bool) {
	ctx := context.Background()
	parent := t // projectors started in subtests run until the whole test ends
	pool := pgtest.MustDB(t, vouchers.Migrations)
	f := fixture{dist: c.dist, dealer: newID(), otherDealer: newID(), bankOrg: newID()}
	later := time.Now().Add(30 * 24 * time.Hour).UTC()
	var ids []string
	issue := func(t *testing.T) string {
		t.Helper()
		r := issueRequest(f, later)
		if _, err := c.client.Issue(ctx, c.bank, r); err != nil {
			t.Fatal(err)
		}
		c.wait(t)
		ids = append(ids, r.ID)
		return r.ID
	}
	redeem := func(t *testing.T, id string) {
		t.Helper()
		if _, err := c.client.Redeem(ctx, c.dist, id, redeemRequest(f)); err != nil {
			t.Fatal(err)
		}
		c.wait(t)
	}
	settle := func(t *testing.T, id string) {
		t.Helper()
		if _, err := c.client.Settle(ctx, c.bank, id, "PAY-"+id[:8]); err != nil {
			t.Fatal(err)
		}
		c.wait(t)
	}

	p := vouchers.NewProjection(pool, c.client, testLogger())
	p.Retry = 100 * time.Millisecond
	stop := runProjector(t, p)

	issued, redeemed, settled := issue(t), issue(t), issue(t)
	redeem(t, redeemed)
	redeem(t, settled)
	settle(t, settled)
	waitProjected(t, pool, issued, vouchers.StatusIssued)
	waitProjected(t, pool, redeemed, vouchers.StatusRedeemed)
	waitProjected(t, pool, settled, vouchers.StatusSettled)

	t.Run("OK_Columns", func(t *testing.T) {
		var status, issuer, distMSP, payRef string
		var amount, redeemedMinor, settledMinor int64
		var orgs []string
		err := pool.QueryRow(ctx, `SELECT status, issuer_msp, amount_minor, distributor_orgs::text[], distributor_msp, redeemed_minor, payment_reference, settled_minor
			FROM vouchers.voucher_states WHERE id = $1`, settled).Scan(&status, &issuer, &amount, &orgs, &distMSP, &redeemedMinor, &payRef, &settledMinor)
		if err != nil {
			t.Fatal(err)
		}
		if status != "settled" || issuer != c.bank || amount != 2_500_000 || !cmp.Equal(orgs, []string{f.dealer}) ||
			distMSP != c.dist || redeemedMinor != 2_300_000 || payRef != "PAY-"+settled[:8] || settledMinor != 2_300_000 {
			t.Errorf("row of %s: %s %s %d %v %s %d %s %d", settled, status, issuer, amount, orgs, distMSP, redeemedMinor, payRef, settledMinor)
		}
	})

	t.Run("OK_Lists", func(t *testing.T) {
		got, next, err := vouchers.List(ctx, pool, vouchers.Filter{BankOrg: f.bankOrg, Limit: 2})
		if err != nil || len(got) != 2 || next == "" {
			t.Fatalf("first page: %d vouchers, next %q, %v", len(got), next, err)
		}
		rest, next2, err := vouchers.List(ctx, pool, vouchers.Filter{BankOrg: f.bankOrg, Limit: 2, After: next})
		if err != nil || len(rest) != 1 || next2 != "" {
			t.Fatalf("second page: %d vouchers, next %q, %v", len(rest), next2, err)
		}
		all := map[string]bool{got[0].ID: true, got[1].ID: true, rest[0].ID: true}
		if !all[issued] || !all[redeemed] || !all[settled] {
			t.Errorf("pages hold %v, want the three vouchers", all)
		}
		open, _, err := vouchers.List(ctx, pool, vouchers.Filter{BankOrg: f.bankOrg, RedeemableBy: &vouchers.Distributor{MSPID: c.dist, OrgID: f.dealer}})
		if err != nil || len(open) != 1 || open[0].ID != issued {
			t.Errorf("redeemable by the dealer: %v, %v; want only %s", open, err, issued)
		}
		other, _, err := vouchers.List(ctx, pool, vouchers.Filter{BankOrg: f.bankOrg, RedeemableBy: &vouchers.Distributor{MSPID: c.dist, OrgID: f.otherDealer}})
		if err != nil || len(other) != 0 {
			t.Errorf("redeemable by another dealer: %v, %v; want none", other, err)
		}
		mine, _, err := vouchers.List(ctx, pool, vouchers.Filter{RedeemedByOrg: f.dealer, Status: vouchers.StatusSettled})
		if err != nil || len(mine) != 1 || mine[0].ID != settled {
			t.Errorf("settled for the dealer: %v, %v; want %s", mine, err, settled)
		}
		_, _, err = vouchers.List(ctx, pool, vouchers.Filter{After: "not-a-cursor"})
		if !apperr.Is(err, apperr.Invalid) {
			t.Errorf("bad cursor: %v, want invalid", err)
		}
		_, err = vouchers.Get(ctx, pool, newID())
		if !apperr.Is(err, apperr.NotFound) {
			t.Errorf("unknown voucher: %v, want not found", err)
		}
	})

	t.Run("OK_ResumesFromCheckpoint", func(t *testing.T) {
		stop()
		// While no projector runs, the chain moves on.
		late := issue(t)
		redeem(t, issued)
		block, _, err := p.Position(ctx)
		if err != nil || block == 0 {
			t.Fatalf("checkpoint at block %d, %v", block, err)
		}
		stop = runProjector(parent, p)
		// A second projector at the same time changes nothing, and learns
		// of a rebuild by another process from the checkpoint row.
		second := vouchers.NewProjection(pool, c.client, testLogger())
		second.RebuildPoll = 200 * time.Millisecond
		runProjector(parent, second)
		waitProjected(t, pool, late, vouchers.StatusIssued)
		waitProjected(t, pool, issued, vouchers.StatusRedeemed)
	})

	t.Run("OK_RebuiltFromEvents", func(t *testing.T) {
		if err := p.Rebuild(ctx); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			st, err := c.client.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			waitProjected(t, pool, id, st.Status)
		}
		projectionMatchesChain(t, c, pool, ids, exact)
	})
}
