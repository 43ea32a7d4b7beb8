-- +goose Up
CREATE SCHEMA IF NOT EXISTS erasure;

-- requests are farmers' erasure requests, one per farmer: the operator's
-- order to forget them. The row is the outbox of what follows: the request
-- is journaled (leaf_index), then put on the ERASURE stream (published_at),
-- where every owner of farmer data acts on it; each records its progress
-- in its own schema (<owner>.erasure_progress).
CREATE TABLE erasure.requests (
    id           uuid        PRIMARY KEY,
    farmer_id    uuid        NOT NULL UNIQUE,
    reason       text        NOT NULL,   -- journaled: public to auditors
    requested_by text        NOT NULL,   -- the operator who asked, journaled
    requested_at timestamptz NOT NULL,
    leaf_index   bigint,                 -- the journaled request, once it is
    published_at timestamptz             -- on the ERASURE stream, once it is
);
CREATE INDEX requests_unfinished ON erasure.requests (requested_at) WHERE leaf_index IS NULL OR published_at IS NULL;

-- +goose Down
DROP SCHEMA erasure CASCADE;
