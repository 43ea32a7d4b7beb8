-- +goose Up
-- erasures is ingest's part of farmers' erasures: one row per erasure it
-- ran. A farmer with a row is forgotten: records about them are refused
-- from then on (the row is checked under the farmer's lock, see
-- internal/forget), and the row says how far the erasure got.
CREATE TABLE ingest.erasures (
    erasure_id   uuid        PRIMARY KEY,
    farmer_id    uuid        NOT NULL UNIQUE,
    started_at   timestamptz NOT NULL DEFAULT now(),
    attempts     int         NOT NULL DEFAULT 1,
    last_error   text,
    completed_at timestamptz,
    erased       jsonb       -- counts of what was erased, never the data
);

-- Public read contract: the operator's erasure status.
CREATE VIEW ingest.erasure_progress AS
    SELECT erasure_id, farmer_id, started_at, attempts, last_error, completed_at, erased FROM ingest.erasures;

-- An erasure finds a farmer's submissions by the payload's farmer_id.
CREATE INDEX submissions_farmer ON ingest.submissions (lower(payload->>'farmer_id'));

-- submissions stays append-only, with one exception: the submissions of a
-- farmer ingest has erased may be deleted (never updated), by the erasure.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION ingest.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM ingest.erasures e WHERE e.farmer_id::text = lower(OLD.payload->>'farmer_id')) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'ingest.submissions is append-only';
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION ingest.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ingest.submissions is append-only';
END $$;
-- +goose StatementEnd
DROP INDEX ingest.submissions_farmer;
DROP VIEW ingest.erasure_progress;
DROP TABLE ingest.erasures;
