-- +goose Up
CREATE SCHEMA ledger;

-- The single row holding the size of the log. The sequencer advances it in
-- the same transaction as the entries and hashes it writes.
CREATE TABLE ledger.tree (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    size bigint  NOT NULL CHECK (size >= 0)
);
INSERT INTO ledger.tree (id, size) VALUES (true, 0);

-- One row per leaf. data is the exact leaf bytes (verify.Entry encoding); the
-- other columns are an index over it for queries, except payload, which the
-- leaf commits to only by hash so that redaction can erase it.
CREATE TABLE ledger.entries (
    idx           bigint      PRIMARY KEY CHECK (idx >= 0),
    data          bytea       NOT NULL,
    type          text        NOT NULL CHECK (type IN ('revision', 'redaction')),
    record_id     text        NOT NULL,
    kind          text        NOT NULL,
    revision      bigint      NOT NULL,
    payload_hash  bytea       NOT NULL,
    occurred_at   timestamptz,
    signature_ref text        NOT NULL,
    logged_at     timestamptz NOT NULL,
    target        bigint,
    payload       bytea,
    redacted_by   bigint
);
CREATE UNIQUE INDEX entries_record_revision ON ledger.entries (record_id, revision) WHERE type = 'revision';
CREATE UNIQUE INDEX entries_redaction_target ON ledger.entries (target) WHERE type = 'redaction';
CREATE INDEX entries_logged_at ON ledger.entries (logged_at);

-- The tlog stored hashes (golang.org/x/mod/sumdb/tlog.StoredHashIndex order).
CREATE TABLE ledger.hashes (
    id   bigint PRIMARY KEY,
    hash bytea  NOT NULL
);

-- Every signed checkpoint, kept forever. anchor is filled by Fabric
-- anchoring (channel, chaincode, tx id, block number) once it exists.
CREATE TABLE ledger.checkpoints (
    size       bigint      PRIMARY KEY CHECK (size > 0),
    root       bytea       NOT NULL,
    note       text        NOT NULL,
    created_at timestamptz NOT NULL,
    anchor     jsonb
);
CREATE INDEX checkpoints_created_at ON ledger.checkpoints (created_at);

-- +goose Down
DROP SCHEMA ledger CASCADE;
