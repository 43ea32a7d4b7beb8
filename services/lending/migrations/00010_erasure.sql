-- +goose Up
-- erasures is lending's part of farmers' erasures (see internal/forget and
-- "Erasure" in docs/lending.md): one row per erasure it ran. score_ids is
-- working state (the farmer's scores, whose journal entries are
-- redacted), kept only until the erasure completes.
CREATE TABLE lending.erasures (
    erasure_id   uuid        PRIMARY KEY,
    farmer_id    uuid        NOT NULL UNIQUE,
    started_at   timestamptz NOT NULL DEFAULT now(),
    attempts     int         NOT NULL DEFAULT 1,
    last_error   text,
    completed_at timestamptz,
    erased       jsonb,      -- counts of what was erased and kept, never the data
    score_ids    uuid[]
);

-- Public read contract: the operator's erasure status.
CREATE VIEW lending.erasure_progress AS
    SELECT erasure_id, farmer_id, started_at, attempts, last_error, completed_at, erased FROM lending.erasures;

-- An erased farmer's scores keep the bank's decision (score, band, PD,
-- limit, confidence, model, when, for which loan) and the codes of the
-- adverse reasons given; the evidence they rested on (payload: the farm's
-- figures, plots, records) is erased, here and in the journal.
ALTER TABLE lending.scores ALTER COLUMN payload DROP NOT NULL;
ALTER TABLE lending.scores ADD COLUMN erased_at timestamptz;
ALTER TABLE lending.scores ADD COLUMN retained_reasons text[];

-- +goose Down
ALTER TABLE lending.scores DROP COLUMN retained_reasons;
ALTER TABLE lending.scores DROP COLUMN erased_at;
ALTER TABLE lending.scores ALTER COLUMN payload SET NOT NULL;
DROP VIEW lending.erasure_progress;
DROP TABLE lending.erasures;
