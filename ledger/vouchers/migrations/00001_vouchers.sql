-- +goose Up
CREATE SCHEMA IF NOT EXISTS vouchers;

-- vouchers is the projection of the vouchers chaincode: one row per
-- voucher, as the last chaincode event about it (VoucherIssued,
-- VoucherRedeemed, VoucherSettled) left it. The chain is the truth; this
-- table is rebuilt from the events (vouchers.Projection.Rebuild) and is
-- written by nothing else. state is the event's payload exactly; the
-- other columns are read from it for queries (times at microsecond
-- precision, the chain's own in state).
CREATE TABLE vouchers.vouchers (
    id                  uuid        PRIMARY KEY,
    status              text        NOT NULL CHECK (status IN ('issued', 'redeemed', 'settled')),
    issuer_msp          text        NOT NULL,
    bank_org            uuid,
    farmer_id           uuid        NOT NULL,
    loan_id             uuid        NOT NULL,
    amount_minor        bigint      NOT NULL CHECK (amount_minor > 0),
    currency            text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    categories          text[]      NOT NULL,
    distributors        text[]      NOT NULL, -- eligible MSP IDs; empty: any registered distributor
    distributor_orgs    uuid[]      NOT NULL, -- eligible distributor organizations; empty: any
    region              text,
    expires_at          timestamptz NOT NULL,
    issued_at           timestamptz NOT NULL,
    issue_tx_id         text        NOT NULL,
    redeemed_at         timestamptz,
    redeem_tx_id        text,
    distributor_msp     text,
    distributor_org     uuid,
    delivery_id         uuid,
    delivery_leaf_index bigint,
    receipt_hash        text,
    redeemed_minor      bigint,
    settled_at          timestamptz,
    settle_tx_id        text,
    payment_reference   text,
    settled_minor       bigint,
    state               jsonb       NOT NULL,
    -- The event that last changed the row: a voucher changes at most once
    -- per block (a second change in one block fails MVCC), so a replayed
    -- or older event never overwrites a newer one.
    block_number        bigint      NOT NULL,
    tx_id               text        NOT NULL,
    projected_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vouchers_loan ON vouchers.vouchers (loan_id);
CREATE INDEX vouchers_farmer ON vouchers.vouchers (farmer_id);
CREATE INDEX vouchers_issuer ON vouchers.vouchers (issuer_msp, bank_org, issued_at DESC, id);
CREATE INDEX vouchers_issued ON vouchers.vouchers (issued_at DESC, id);
CREATE INDEX vouchers_delivery ON vouchers.vouchers (delivery_id) WHERE delivery_id IS NOT NULL;
CREATE INDEX vouchers_distributor_org ON vouchers.vouchers (distributor_org, redeemed_at DESC) WHERE distributor_org IS NOT NULL;
CREATE INDEX vouchers_eligible_orgs ON vouchers.vouchers USING gin (distributor_orgs);

-- checkpoint is where the event listener resumes: after tx_id in
-- block_number (an empty tx_id: at block_number). It moves in the same
-- transaction as the rows an event changes. generation changes on every
-- rebuild, so that a listener still streaming from an old position stops
-- and starts over instead of writing after the wipe.
CREATE TABLE vouchers.checkpoint (
    chain        text        PRIMARY KEY, -- channel/chaincode
    block_number bigint      NOT NULL DEFAULT 0,
    tx_id        text        NOT NULL DEFAULT '',
    generation   bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- voucher_states is the public read contract for lending, marketplace and
-- any other service: the projection without its bookkeeping.
CREATE VIEW vouchers.voucher_states AS
SELECT id, status, issuer_msp, bank_org, farmer_id, loan_id, amount_minor, currency, categories,
       distributors, distributor_orgs, region, expires_at, issued_at, issue_tx_id,
       redeemed_at, redeem_tx_id, distributor_msp, distributor_org, delivery_id, delivery_leaf_index,
       receipt_hash, redeemed_minor, settled_at, settle_tx_id, payment_reference, settled_minor,
       state, block_number
FROM vouchers.vouchers;

-- +goose Down
DROP VIEW vouchers.voucher_states;
DROP TABLE vouchers.checkpoint;
DROP TABLE vouchers.vouchers;
DROP SCHEMA vouchers;
