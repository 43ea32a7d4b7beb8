-- +goose Up
-- loan_records are the signed loan records agents capture (loan.applied,
-- loan.accepted, repayment.collected), one row per record, normalized.
-- services/lending acts on them once attest has verified them; the
-- one-time code of an acceptance is not copied here (mobile-api checked
-- and consumed it; the signed record keeps it).
CREATE TABLE ingest.loan_records (
    record_id       uuid PRIMARY KEY,
    type            text        NOT NULL CHECK (type IN ('loan.applied', 'loan.accepted', 'repayment.collected')),
    farmer_id       uuid        NOT NULL,
    loan_id         uuid        NOT NULL,
    agent_id        uuid        NOT NULL,
    captured_at     timestamptz NOT NULL,
    product_id      uuid,        -- loan.applied
    amount_minor    bigint,      -- loan.applied, repayment.collected
    currency        char(3),
    purpose         text,        -- loan.applied
    terms_sha256    text,        -- loan.accepted
    payer_reference text,        -- repayment.collected
    collected_on    date         -- repayment.collected
);
CREATE INDEX loan_records_farmer ON ingest.loan_records (farmer_id);
CREATE INDEX loan_records_loan ON ingest.loan_records (loan_id);

-- A farmer's credit profile reads every event of one farmer: index them by
-- farmer (they were indexed by plot only).
CREATE INDEX crop_cycles_farmer ON ingest.crop_cycles (farmer_id);
CREATE INDEX input_applications_farmer ON ingest.input_applications (farmer_id);
CREATE INDEX harvests_farmer ON ingest.harvests (farmer_id);

-- Public read contracts for services/lending: what each record says,
-- normalized (kg, ha, minor currency units). Which of them are attested
-- is attest's to say (attest.evidence).
CREATE VIEW ingest.loan_record_facts AS
    SELECT record_id, type, farmer_id, loan_id, agent_id, captured_at, product_id, amount_minor, currency, purpose,
           terms_sha256, payer_reference, collected_on
    FROM ingest.loan_records;
CREATE VIEW ingest.plot_facts AS
    SELECT plot_id, farmer_id, record_id, area_ha, declared_area_ha, tenure, captured_at FROM ingest.plots;
CREATE VIEW ingest.crop_cycle_facts AS
    SELECT record_id, farmer_id, plot_id, crop, variety, planted_on, expected_harvest_on FROM ingest.crop_cycles;
CREATE VIEW ingest.input_facts AS
    SELECT record_id, farmer_id, plot_id, product, category, quantity, unit, applied_on FROM ingest.input_applications;
CREATE VIEW ingest.harvest_facts AS
    SELECT record_id, farmer_id, plot_id, crop, quantity_kg, quality_grade, harvested_on FROM ingest.harvests;
CREATE VIEW ingest.sale_facts AS
    SELECT record_id, farmer_id, buyer, crop, quantity_kg, price_minor, currency, sold_on FROM ingest.sales;

-- +goose Down
DROP VIEW ingest.sale_facts, ingest.harvest_facts, ingest.input_facts, ingest.crop_cycle_facts, ingest.plot_facts, ingest.loan_record_facts;
DROP INDEX ingest.harvests_farmer;
DROP INDEX ingest.input_applications_farmer;
DROP INDEX ingest.crop_cycles_farmer;
DROP TABLE ingest.loan_records;
