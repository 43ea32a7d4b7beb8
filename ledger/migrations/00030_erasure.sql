-- +goose Up
-- An erasure (a farmer asked to be forgotten) erases the payload of every
-- revision of the records it names and appends, in the same transaction,
-- one redaction entry per erased revision and one entry for the erasure
-- itself. Leaves commit to payload hashes, so every root, proof and receipt
-- still verifies.
CREATE TABLE ledger.erasures (
    id         text        PRIMARY KEY,  -- the erasure id: the record id of its entry
    subject    text        NOT NULL,     -- whom it is about, e.g. "farmer <uuid>": never personal data
    leaf_index bigint      NOT NULL,     -- the erasure's own entry
    redacted   bigint[]    NOT NULL,     -- leaf indexes of the revisions whose payloads it erased
    redactions bigint[]    NOT NULL,     -- leaf indexes of the redaction entries it appended
    erased_at  timestamptz NOT NULL
);

-- Records an erasure named: they are refused if anyone tries to journal
-- them again (a retry racing the erasure).
CREATE TABLE ledger.erased_records (
    record_id  text PRIMARY KEY,
    erasure_id text NOT NULL REFERENCES ledger.erasures (id)
);

-- Public read contract: the operator's erasure status.
CREATE VIEW ledger.erasure_progress AS
    SELECT id AS erasure_id, leaf_index, cardinality(redacted) AS redacted, erased_at AS completed_at FROM ledger.erasures;

-- +goose Down
DROP VIEW ledger.erasure_progress;
DROP TABLE ledger.erased_records, ledger.erasures;
