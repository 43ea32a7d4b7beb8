-- +goose Up
-- erasures is the webhooks module's part of farmers' erasures (see
-- internal/forget): one row per erasure it ran. A farmer with a row is
-- forgotten: the fan-out creates no delivery about them, and replay and
-- polling show none of their events, from then on.
CREATE TABLE webhooks.erasures (
    erasure_id   uuid        PRIMARY KEY,
    farmer_id    uuid        NOT NULL UNIQUE,
    started_at   timestamptz NOT NULL DEFAULT now(),
    attempts     int         NOT NULL DEFAULT 1,
    last_error   text,
    completed_at timestamptz,
    erased       jsonb       -- counts of what was erased, never the data
);

-- Public read contract: the operator's erasure status.
CREATE VIEW webhooks.erasure_progress AS
    SELECT erasure_id, farmer_id, started_at, attempts, last_error, completed_at, erased FROM webhooks.erasures;

CREATE INDEX deliveries_farmer ON webhooks.deliveries (farmer_id) WHERE farmer_id IS NOT NULL;

-- +goose Down
DROP INDEX webhooks.deliveries_farmer;
DROP VIEW webhooks.erasure_progress;
DROP TABLE webhooks.erasures;
