-- +goose Up
CREATE SCHEMA IF NOT EXISTS mobile;

-- received is mobile-api's record of what it acknowledged to a device: a
-- row exists only after JetStream acked the publish. It answers "duplicate"
-- and "conflict" long after JetStream's de-duplication window has passed.
CREATE TABLE mobile.received (
    id           uuid PRIMARY KEY,
    type         text        NOT NULL,
    content_hash bytea       NOT NULL CHECK (length(content_hash) = 32),
    received_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP SCHEMA mobile CASCADE;
