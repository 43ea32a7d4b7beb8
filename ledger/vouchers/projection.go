package vouchers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	vcc "github.com/tani-platform/tani/ledger/chaincode/vouchers"
	"github.com/tani-platform/tani/ledger/fabric"
)

// Projection follows the vouchers chaincode's events into
// vouchers.vouchers. Each event's rows and the checkpoint after it commit
// in one transaction, so the table holds exactly the events up to the
// checkpoint, whatever crashes in between: a restart resumes there. Several
// processes may run it at once (each event's transaction locks the
// checkpoint row; a replayed event changes nothing).
type Projection struct {
	pool   *pgxpool.Pool
	events *Client
	chain  string
	logger *slog.Logger
	// Retry is the pause before listening again after the stream ended or
	// failed (default 2s).
	Retry time.Duration
	// RebuildPoll is how often a listener checks whether another process
	// rebuilt the projection (default 5s); one in this process learns at
	// once.
	RebuildPoll time.Duration
	rebuilt     chan struct{}
}

// NewProjection returns the projection of c's chaincode into pool. It does
// no I/O.
func NewProjection(pool *pgxpool.Pool, c *Client, logger *slog.Logger) *Projection {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Projection{pool: pool, events: c, chain: c.Channel() + "/" + c.Chaincode(), logger: logger,
		Retry: 2 * time.Second, RebuildPoll: 5 * time.Second, rebuilt: make(chan struct{}, 1)}
}

// errRebuilt stops a listener whose stream started before a rebuild.
var errRebuilt = errors.New("vouchers: projection rebuilt; listening again from its checkpoint")

// Run follows the events until ctx is done, listening again from the
// checkpoint after the stream ends or fails (a peer going away, a
// rebuild). It returns nil when ctx is done.
func (p *Projection) Run(ctx context.Context) error {
	for {
		err := p.listen(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := p.Retry
		switch {
		case errors.Is(err, errRebuilt):
			wait = 0
			p.logger.InfoContext(ctx, "vouchers projection rebuilt; replaying the chain's events")
		case err != nil:
			p.logger.WarnContext(ctx, "vouchers event stream failed; listening again", "err", err, "in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// checkpoint is the listener's starting position; the position moves in
// Postgres, with each event's rows, not through CheckpointTransaction.
type checkpoint struct {
	block uint64
	txID  string
}

func (c *checkpoint) BlockNumber() uint64                        { return c.block }
func (c *checkpoint) TransactionID() string                      { return c.txID }
func (c *checkpoint) CheckpointTransaction(uint64, string) error { return nil }

func (p *Projection) listen(ctx context.Context) error {
	if _, err := p.pool.Exec(ctx, `INSERT INTO vouchers.checkpoint (chain) VALUES ($1) ON CONFLICT DO NOTHING`, p.chain); err != nil {
		return fmt.Errorf("vouchers: create checkpoint: %w", err)
	}
	var cp checkpoint
	var gen int64
	var block int64
	if err := p.pool.QueryRow(ctx, `SELECT block_number, tx_id, generation FROM vouchers.checkpoint WHERE chain = $1`, p.chain).Scan(&block, &cp.txID, &gen); err != nil {
		return fmt.Errorf("vouchers: read checkpoint: %w", err)
	}
	cp.block = uint64(block)
	p.logger.DebugContext(ctx, "listening to vouchers events", "chain", p.chain, "block", cp.block, "after_tx", cp.txID)
	// A rebuild must restart the stream even when no event comes: watch
	// for one (this process's at once, another's by the generation).
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		t := time.NewTicker(p.RebuildPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-p.rebuilt:
				cancel(errRebuilt)
				return
			case <-t.C:
				var cur int64
				err := p.pool.QueryRow(ctx, `SELECT generation FROM vouchers.checkpoint WHERE chain = $1`, p.chain).Scan(&cur)
				if err == nil && cur != gen {
					cancel(errRebuilt)
					return
				}
			}
		}
	}()
	err := p.events.as[p.events.order[0]].ListenEvents(ctx, &cp, func(ctx context.Context, ev *client.ChaincodeEvent) error {
		return p.apply(ctx, gen, ev)
	})
	if cause := context.Cause(ctx); errors.Is(cause, errRebuilt) {
		return errRebuilt
	}
	return err
}

// apply projects one event and moves the checkpoint past it, in one
// transaction, unless a rebuild happened since the stream started.
func (p *Projection) apply(ctx context.Context, gen int64, ev *client.ChaincodeEvent) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var cur int64
		if err := tx.QueryRow(ctx, `SELECT generation FROM vouchers.checkpoint WHERE chain = $1 FOR UPDATE`, p.chain).Scan(&cur); err != nil {
			return fmt.Errorf("vouchers: lock checkpoint: %w", err)
		}
		if cur != gen {
			return errRebuilt
		}
		if v, err := decodeEvent(ev); err != nil {
			// Not something a retry fixes: say so loudly and go on, or
			// one bad event would blind every reader for good.
			p.logger.ErrorContext(ctx, "vouchers event not projected", "tx_id", ev.TransactionID, "block", ev.BlockNumber, "event", ev.EventName, "err", err)
		} else if v != nil {
			if err := p.checkTerms(ctx, tx, v, ev); err != nil {
				return err
			}
			if err := upsert(ctx, tx, v, ev); err != nil {
				return err
			}
			p.logger.DebugContext(ctx, "voucher projected", "voucher", v.ID, "status", v.Status, "block", ev.BlockNumber)
		}
		_, err := tx.Exec(ctx, `UPDATE vouchers.checkpoint SET block_number = $2, tx_id = $3, updated_at = now()
			WHERE chain = $1 AND block_number <= $2`, p.chain, int64(ev.BlockNumber), ev.TransactionID)
		if err != nil {
			return fmt.Errorf("vouchers: move checkpoint: %w", err)
		}
		return nil
	})
}

// checkTerms compares an event's voucher with the one projected before:
// a voucher's issued terms, and its redemption once made, never change
// through the contract, so an event that changes them was written by
// parties whose endorsement the key's policy accepted but who did not run
// the contract (see "Vouchers on Fabric"). The chain is still projected as
// it is; the change is logged as an error for the bank and the operator.
func (p *Projection) checkTerms(ctx context.Context, tx pgx.Tx, v *Voucher, ev *client.ChaincodeEvent) error {
	var state []byte
	var block int64
	err := tx.QueryRow(ctx, `SELECT state, block_number FROM vouchers.vouchers WHERE id = $1`, v.ID).Scan(&state, &block)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && uint64(block) >= ev.BlockNumber) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("vouchers: read projected %s: %w", v.ID, err)
	}
	var old Voucher
	if err := json.Unmarshal(state, &old); err != nil {
		return fmt.Errorf("vouchers: decode projected %s: %w", v.ID, err)
	}
	if changed := termsChanged(&old, v); changed != "" {
		p.logger.ErrorContext(ctx, "voucher terms changed on the chain outside the contract's rules", "voucher", v.ID, "tx_id", ev.TransactionID,
			"block", ev.BlockNumber, "event", ev.EventName, "changed", changed, "was", string(state))
	}
	return nil
}

// termsChanged names what of old's issued terms, redemption or status
// order next changes ("" when nothing).
func termsChanged(old, next *Voucher) string {
	rank := map[string]int{StatusIssued: 1, StatusRedeemed: 2, StatusSettled: 3}
	var changed []string
	if rank[next.Status] < rank[old.Status] {
		changed = append(changed, "status "+old.Status+" → "+next.Status)
	}
	o, n := issueTerms(old), issueTerms(next)
	if ob, nb := mustJSON(o), mustJSON(n); ob != nb {
		changed = append(changed, "issued terms")
	}
	if old.Redemption != nil && mustJSON(old.Redemption) != mustJSON(next.Redemption) {
		changed = append(changed, "redemption")
	}
	return strings.Join(changed, ", ")
}

func issueTerms(v *Voucher) any {
	return []any{v.ID, v.Issuer, v.BankOrg, v.FarmerID, v.LoanID, v.Amount, v.Categories, v.Distributors, v.DistributorOrgs,
		v.Region, v.ExpiresAt.UTC(), v.IssuedAt.UTC(), v.IssueTxID}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// decodeEvent returns the voucher an event carries, nil for an event that
// is not about a voucher's state, or an error for one that does not hold
// together (its status, or the transaction it names, is not the event's).
func decodeEvent(ev *client.ChaincodeEvent) (*Voucher, error) {
	want := map[string]string{vcc.IssuedEvent: StatusIssued, vcc.RedeemedEvent: StatusRedeemed, vcc.SettledEvent: StatusSettled}[ev.EventName]
	if want == "" {
		return nil, nil
	}
	var v Voucher
	if err := json.Unmarshal(ev.Payload, &v); err != nil {
		return nil, fmt.Errorf("decode payload: %w", err)
	}
	if v.Status != want {
		return nil, fmt.Errorf("%s carries status %q", ev.EventName, v.Status)
	}
	var tx string
	switch {
	case want == StatusIssued:
		tx = v.IssueTxID
	case want == StatusRedeemed && v.Redemption != nil:
		tx = v.Redemption.TxID
	case want == StatusSettled && v.Settlement != nil:
		tx = v.Settlement.TxID
	}
	if tx != ev.TransactionID {
		return nil, fmt.Errorf("%s names transaction %q", ev.EventName, tx)
	}
	return &v, nil
}

func upsert(ctx context.Context, tx pgx.Tx, v *Voucher, ev *client.ChaincodeEvent) error {
	state, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var bankOrg, region any
	if v.BankOrg != "" {
		bankOrg = v.BankOrg
	}
	if v.Region != "" {
		region = v.Region
	}
	var redeemedAt, redeemTx, distMSP, distOrg, delivery, leaf, receipt, redeemed any
	if r := v.Redemption; r != nil {
		redeemedAt, redeemTx, distMSP, delivery, leaf, receipt, redeemed = r.RedeemedAt, r.TxID, r.Distributor, r.DeliveryID, int64(r.LeafIndex), r.ReceiptHash, r.Amount.Minor
		if r.DistributorOrg != "" {
			distOrg = r.DistributorOrg
		}
	}
	var settledAt, settleTx, payRef, settled any
	if s := v.Settlement; s != nil {
		settledAt, settleTx, payRef, settled = s.SettledAt, s.TxID, s.PaymentReference, s.Amount.Minor
	}
	dists, orgs := v.Distributors, v.DistributorOrgs
	if dists == nil {
		dists = []string{}
	}
	if orgs == nil {
		orgs = []string{}
	}
	_, err = tx.Exec(ctx, `
		INSERT INTO vouchers.vouchers (id, status, issuer_msp, bank_org, farmer_id, loan_id, amount_minor, currency,
			categories, distributors, distributor_orgs, region, expires_at, issued_at, issue_tx_id,
			redeemed_at, redeem_tx_id, distributor_msp, distributor_org, delivery_id, delivery_leaf_index, receipt_hash, redeemed_minor,
			settled_at, settle_tx_id, payment_reference, settled_minor, state, block_number, tx_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::uuid[], $12, $13, $14, $15,
			$16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30)
		ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
			redeemed_at = EXCLUDED.redeemed_at, redeem_tx_id = EXCLUDED.redeem_tx_id, distributor_msp = EXCLUDED.distributor_msp,
			distributor_org = EXCLUDED.distributor_org, delivery_id = EXCLUDED.delivery_id, delivery_leaf_index = EXCLUDED.delivery_leaf_index,
			receipt_hash = EXCLUDED.receipt_hash, redeemed_minor = EXCLUDED.redeemed_minor,
			settled_at = EXCLUDED.settled_at, settle_tx_id = EXCLUDED.settle_tx_id, payment_reference = EXCLUDED.payment_reference,
			settled_minor = EXCLUDED.settled_minor, state = EXCLUDED.state, block_number = EXCLUDED.block_number,
			tx_id = EXCLUDED.tx_id, projected_at = now()
		WHERE vouchers.block_number < EXCLUDED.block_number`,
		v.ID, v.Status, v.Issuer, bankOrg, v.FarmerID, v.LoanID, v.Amount.Minor, v.Amount.Currency,
		v.Categories, dists, orgs, region, v.ExpiresAt, v.IssuedAt, v.IssueTxID,
		redeemedAt, redeemTx, distMSP, distOrg, delivery, leaf, receipt, redeemed,
		settledAt, settleTx, payRef, settled, state, int64(ev.BlockNumber), ev.TransactionID)
	if err != nil {
		return fmt.Errorf("vouchers: project voucher %s from tx %s: %w", v.ID, ev.TransactionID, err)
	}
	return nil
}

// Rebuild wipes the projection and its checkpoint in one transaction.
// This projection's listener starts over at once, one in another process
// within RebuildPoll (or at its next event, which it does not project),
// and replays the chain's events from block 0; until it has, readers see
// fewer vouchers than the chain holds.
func (p *Projection) Rebuild(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO vouchers.checkpoint (chain) VALUES ($1) ON CONFLICT DO NOTHING`, p.chain); err != nil {
			return fmt.Errorf("vouchers: rebuild: %w", err)
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM vouchers.checkpoint WHERE chain = $1 FOR UPDATE`, p.chain); err != nil {
			return fmt.Errorf("vouchers: rebuild: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM vouchers.vouchers`); err != nil {
			return fmt.Errorf("vouchers: rebuild: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE vouchers.checkpoint SET block_number = 0, tx_id = '', generation = generation + 1, updated_at = now() WHERE chain = $1`, p.chain); err != nil {
			return fmt.Errorf("vouchers: rebuild: %w", err)
		}
		p.logger.InfoContext(ctx, "vouchers projection wiped; it is rebuilt from the chain's events", "chain", p.chain)
		return nil
	})
	if err == nil {
		select {
		case p.rebuilt <- struct{}{}:
		default:
		}
	}
	return err
}

// Position is the listener's checkpoint: the block and transaction of the
// last event projected.
func (p *Projection) Position(ctx context.Context) (block uint64, txID string, err error) {
	var b int64
	err = p.pool.QueryRow(ctx, `SELECT block_number, tx_id FROM vouchers.checkpoint WHERE chain = $1`, p.chain).Scan(&b, &txID)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", nil
	}
	return uint64(b), txID, err
}

var _ fabric.Checkpointer = (*checkpoint)(nil)
