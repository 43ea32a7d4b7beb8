-- +goose Up
-- erasures is attest's part of farmers' erasures: one row per erasure it
-- ran. A farmer with a row is forgotten: records about them are refused
-- from then on (checked under the farmer's lock, see internal/forget).
-- record_ids and review_ids hold, while the erasure runs, what it erases
-- from the journal and the streams; they are cleared when it completes.
CREATE TABLE attest.erasures (
    erasure_id   uuid        PRIMARY KEY,
    farmer_id    uuid        NOT NULL UNIQUE,
    started_at   timestamptz NOT NULL DEFAULT now(),
    attempts     int         NOT NULL DEFAULT 1,
    last_error   text,
    completed_at timestamptz,
    erased       jsonb,      -- counts of what was erased, never the data
    record_ids   uuid[],
    review_ids   uuid[]
);

-- Public read contract: the operator's erasure status.
CREATE VIEW attest.erasure_progress AS
    SELECT erasure_id, farmer_id, started_at, attempts, last_error, completed_at, erased FROM attest.erasures;

CREATE INDEX records_farmer ON attest.records (farmer_id);

-- review_events stays append-only, with one exception: the review events
-- of a farmer attest has erased may be deleted, by the erasure.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION attest.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL
       AND (to_jsonb(NEW) - 'leaf_index') = (to_jsonb(OLD) - 'leaf_index') THEN
        RETURN NEW;  -- recording where the decision was journaled
    END IF;
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM attest.reviews v JOIN attest.records r USING (record_id) JOIN attest.erasures e ON e.farmer_id = r.farmer_id
        WHERE v.id = OLD.review_id) THEN
        RETURN OLD;  -- the farmer was erased
    END IF;
    RAISE EXCEPTION 'attest.review_events is append-only';
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION attest.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL
       AND (to_jsonb(NEW) - 'leaf_index') = (to_jsonb(OLD) - 'leaf_index') THEN
        RETURN NEW;  -- recording where the decision was journaled
    END IF;
    RAISE EXCEPTION 'attest.review_events is append-only';
END $$;
-- +goose StatementEnd
DROP INDEX attest.records_farmer;
DROP VIEW attest.erasure_progress;
DROP TABLE attest.erasures;
