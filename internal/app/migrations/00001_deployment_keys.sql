-- +goose Up
-- Fingerprints (never the secrets) of the keys every process of a
-- deployment must share, as the first process that used this database had
-- them. A process with another key refuses to start instead of silently
-- hashing, sealing or signing under a key the others do not have.
CREATE SCHEMA IF NOT EXISTS deployment;
CREATE TABLE deployment.keys (
    name        text PRIMARY KEY,
    key_id      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE deployment.keys;
DROP SCHEMA deployment;
