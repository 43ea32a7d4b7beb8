-- +goose Up
CREATE SCHEMA IF NOT EXISTS lending;

-- products are a bank's loan products. Amounts are in minor units of
-- currency. Interest is simple, yearly, on the principal for the term;
-- the fee is charged once. A bullet loan is due at the financed crop's
-- expected harvest plus grace_days (never later than tenor_days after the
-- offer); a flexible one takes any amount at any time and is due
-- tenor_days after disbursement. ltv_bps caps a loan at that share of the
-- expected revenue of the financed land (the scorecard's limit). The
-- auto_* thresholds are the bank's policy: applications are approved or
-- declined automatically by score; between them a credit officer decides.
CREATE TABLE lending.products (
    id                       uuid PRIMARY KEY,
    organization_id          uuid        NOT NULL,
    name                     text        NOT NULL,
    crops                    text[]      NOT NULL CHECK (cardinality(crops) > 0),
    currency                 char(3)     NOT NULL,
    min_amount               bigint      NOT NULL CHECK (min_amount > 0),
    max_amount               bigint      NOT NULL CHECK (max_amount >= min_amount),
    fee_bps                  int         NOT NULL CHECK (fee_bps BETWEEN 0 AND 2000),
    interest_bps             int         NOT NULL CHECK (interest_bps BETWEEN 0 AND 6000),
    tenor_days               int         NOT NULL CHECK (tenor_days BETWEEN 30 AND 1095),
    grace_days               int         NOT NULL CHECK (grace_days BETWEEN 0 AND 180),
    repayment_style          text        NOT NULL CHECK (repayment_style IN ('bullet', 'flexible')),
    down_payment_bps         int         NOT NULL DEFAULT 0 CHECK (down_payment_bps BETWEEN 0 AND 5000),
    ltv_bps                  int         NOT NULL CHECK (ltv_bps BETWEEN 1 AND 10000),
    auto_approve_min_score   int,
    auto_decline_below_score int,
    offer_valid_days         int         NOT NULL CHECK (offer_valid_days BETWEEN 1 AND 60),
    voucher_categories       text[]      NOT NULL DEFAULT '{}',
    status                   text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, name)
);

-- loans: one row per application, through its whole life. state follows
-- the machine in services/lending/state.go; revision counts the loan's
-- journal entries (loan_events). terms is the offer exactly as the farmer
-- was asked to accept it, terms_sha256 the SHA-256 of those bytes.
CREATE TABLE lending.loans (
    id                    uuid PRIMARY KEY,
    organization_id       uuid        NOT NULL,
    product_id            uuid        NOT NULL REFERENCES lending.products (id),
    farmer_id             uuid        NOT NULL,
    channel               text        NOT NULL CHECK (channel IN ('bank', 'agent')),
    application_record_id uuid UNIQUE,           -- the agent's signed loan.applied record
    agent_id              uuid,
    region                text        NOT NULL DEFAULT '',
    crop                  text        NOT NULL,
    requested_amount      bigint      NOT NULL CHECK (requested_amount > 0),
    currency              char(3)     NOT NULL,
    purpose               text        NOT NULL,
    state                 text        NOT NULL CHECK (state IN ('applied', 'declined', 'offered', 'expired', 'accepted', 'disbursed',
                                                               'in_arrears', 'restructured', 'repaid', 'written_off')),
    decision_reason       text,
    decided_by            text,
    score_id              uuid,
    principal             bigint,
    fee                   bigint,
    interest              bigint,
    total_due             bigint,
    terms                 bytea,
    terms_sha256          text,
    offered_at            timestamptz,
    offer_expires_at      timestamptz,
    accepted_record_id    uuid UNIQUE,           -- the farmer's signed loan.accepted record
    accepted_at           timestamptz,
    disbursed_at          timestamptz,
    disbursement          jsonb,
    due_on                date,
    paid                  bigint      NOT NULL DEFAULT 0 CHECK (paid >= 0),
    max_dpd               int         NOT NULL DEFAULT 0,
    restructured          boolean     NOT NULL DEFAULT false,
    closed_at             timestamptz,
    revision              int         NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (total_due IS NULL OR paid <= total_due)
) WITH (fillfactor = 80);  -- room for HOT updates: a loan's row changes with every repayment
CREATE INDEX loans_organization ON lending.loans (organization_id, created_at);
CREATE INDEX loans_farmer ON lending.loans (farmer_id);
CREATE INDEX loans_active ON lending.loans (state) WHERE state IN ('offered', 'disbursed', 'in_arrears', 'restructured');

-- installments: the schedule. A loan's payments are allocated to its
-- installments in order; days past due count from the oldest installment
-- not fully paid once its date has passed.
CREATE TABLE lending.installments (
    loan_id uuid   NOT NULL REFERENCES lending.loans (id),
    seq     int    NOT NULL,
    due_on  date   NOT NULL,
    amount  bigint NOT NULL CHECK (amount > 0),
    PRIMARY KEY (loan_id, seq)
);

-- loan_events: every state change, append-only, with the exact bytes
-- journaled (record <loan id>, revision, kind loan.<state>, or
-- loan.agreement for the acceptance). The row is the journal's outbox:
-- leaf_index is NULL until the journal holds the entry.
CREATE TABLE lending.loan_events (
    loan_id    uuid        NOT NULL REFERENCES lending.loans (id),
    revision   int         NOT NULL,
    kind       text        NOT NULL,
    from_state text,
    to_state   text        NOT NULL,
    actor      text        NOT NULL,
    reason     text        NOT NULL DEFAULT '',
    at         timestamptz NOT NULL,
    payload    bytea       NOT NULL,
    leaf_index bigint,
    PRIMARY KEY (loan_id, revision)
);
CREATE INDEX loan_events_unjournaled ON lending.loan_events (loan_id, revision) WHERE leaf_index IS NULL;

-- +goose StatementBegin
CREATE FUNCTION lending.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL
       AND (to_jsonb(NEW) - 'leaf_index') = (to_jsonb(OLD) - 'leaf_index') THEN
        RETURN NEW;  -- recording where the entry was journaled
    END IF;
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
-- +goose StatementEnd
CREATE TRIGGER loan_events_append_only BEFORE UPDATE OR DELETE ON lending.loan_events
    FOR EACH ROW EXECUTE FUNCTION lending.forbid_change();

-- repayments: money received towards a loan, from the bank's systems or
-- collected by an agent (signed repayment.collected record). Idempotent by
-- the payer's reference within a loan: the same reference with the same
-- content is the same repayment; with other content, a conflict.
CREATE TABLE lending.repayments (
    id              uuid PRIMARY KEY,
    loan_id         uuid        NOT NULL REFERENCES lending.loans (id),
    organization_id uuid        NOT NULL,
    payer_reference text        NOT NULL,
    amount          bigint      NOT NULL CHECK (amount > 0),
    currency        char(3)     NOT NULL,
    paid_on         date        NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('bank', 'agent')),
    record_id       uuid UNIQUE,                 -- the agent's signed record
    received_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (loan_id, payer_reference)
);
CREATE INDEX repayments_organization ON lending.repayments (organization_id, received_at);
CREATE TRIGGER repayments_append_only BEFORE UPDATE OR DELETE ON lending.repayments
    FOR EACH ROW EXECUTE FUNCTION lending.forbid_change();

-- scores: every score computed for a decision, with the exact bytes
-- journaled (record <score id>, kind credit.score): the model version and
-- digest, the result, and the journal leaves of the evidence it saw.
CREATE TABLE lending.scores (
    id                uuid PRIMARY KEY,
    organization_id   uuid        NOT NULL,
    farmer_id         uuid        NOT NULL,
    product_id        uuid        NOT NULL,
    loan_id           uuid,
    model_version     text        NOT NULL,
    score             int         NOT NULL,
    band              text        NOT NULL,
    pd                double precision NOT NULL,
    recommended_limit bigint      NOT NULL,
    confidence        double precision NOT NULL,
    payload           bytea       NOT NULL,
    leaf_index        bigint,
    computed_at       timestamptz NOT NULL
);
CREATE INDEX scores_farmer ON lending.scores (organization_id, farmer_id, computed_at DESC);
CREATE INDEX scores_unjournaled ON lending.scores (computed_at) WHERE leaf_index IS NULL;

-- shocks: regional shocks (drought, flood, pest, price collapse) an
-- operator declares; loans of the region and crops falling due in the
-- window are proposed a restructuring.
CREATE TABLE lending.shocks (
    id             uuid PRIMARY KEY,
    region         text        NOT NULL,
    crops          text[]      NOT NULL,
    reason         text        NOT NULL,
    starts_on      date        NOT NULL,
    ends_on        date        NOT NULL CHECK (ends_on >= starts_on),
    extension_days int         NOT NULL CHECK (extension_days BETWEEN 1 AND 365),
    declared_by    text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- restructurings: proposals the servicing loop makes (a harvest far below
-- the expected yield, a regional shock) and the bank accepts or declines.
-- One per loan and cause.
CREATE TABLE lending.restructurings (
    id             uuid PRIMARY KEY,
    loan_id        uuid        NOT NULL REFERENCES lending.loans (id),
    cause          text        NOT NULL CHECK (cause IN ('harvest_shortfall', 'regional_shock')),
    evidence       text        NOT NULL,   -- the harvest record id, or the shock id
    detail         text        NOT NULL,
    extension_days int         NOT NULL,
    state          text        NOT NULL DEFAULT 'proposed' CHECK (state IN ('proposed', 'accepted', 'declined')),
    decided_by     text,
    reason         text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    decided_at     timestamptz,
    UNIQUE (loan_id, cause, evidence)
);
CREATE INDEX restructurings_proposed ON lending.restructurings (loan_id) WHERE state = 'proposed';

-- record_outcomes: what lending did with each attested loan record
-- (applied, or refused with the reason: an offer expired before the
-- farmer's acceptance synced, a repayment on a repaid loan…). One row per
-- record: a redelivered message finds it and does nothing.
CREATE TABLE lending.record_outcomes (
    record_id  uuid PRIMARY KEY,
    type       text        NOT NULL,
    loan_id    uuid        NOT NULL,
    farmer_id  uuid        NOT NULL,
    applied    boolean     NOT NULL,
    reason     text,
    at         timestamptz NOT NULL DEFAULT now()
);

-- Public read contracts.
-- product_catalogue: open products, for mobile-api to check an agent's
-- loan.applied record before acknowledging it.
CREATE VIEW lending.product_catalogue AS
    SELECT id, organization_id, name, crops, currency, min_amount, max_amount, status FROM lending.products;
-- farmer_loans: a farmer's loans as the agent may see them (state, offer
-- terms, balance), for mobile-api's offers list, OTP message and checks.
CREATE VIEW lending.farmer_loans AS
    SELECT l.id AS loan_id, l.farmer_id, l.organization_id, l.product_id, l.state, l.currency, l.requested_amount,
           l.principal, l.fee, l.interest, l.total_due, coalesce(l.total_due - l.paid, 0) AS balance, l.due_on,
           l.terms_sha256, l.offer_expires_at, l.updated_at
    FROM lending.loans l;

-- loan_record_refusals: the agents' loan records lending could not apply,
-- with why, for mobile-api to show the agent.
CREATE VIEW lending.loan_record_refusals AS
    SELECT record_id, type, loan_id, farmer_id, reason, at FROM lending.record_outcomes WHERE NOT applied;

-- +goose Down
DROP SCHEMA lending CASCADE;
