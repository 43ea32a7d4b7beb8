-- +goose Up
-- A received record names its farmer, so that an erasure finds what
-- mobile-api holds about them (records received before this column are
-- not found by farmer: Tani had no deployment then).
ALTER TABLE mobile.received ADD COLUMN farmer_id uuid;
CREATE INDEX received_farmer ON mobile.received (farmer_id);

-- erasures is mobile-api's part of farmers' erasures: one row per erasure
-- it ran. A farmer with a row is forgotten: /sync refuses records about
-- them, and sync-down tells the phones of agent_ids (who served the
-- farmer) to drop what they hold. media_pending lists, while the erasure
-- runs, the media files still to delete; it is cleared when it completes.
CREATE TABLE mobile.erasures (
    erasure_id    uuid        PRIMARY KEY,
    farmer_id     uuid        NOT NULL UNIQUE,
    started_at    timestamptz NOT NULL DEFAULT now(),
    attempts      int         NOT NULL DEFAULT 1,
    last_error    text,
    completed_at  timestamptz,
    erased        jsonb,      -- counts of what was erased, never the data
    agent_ids     uuid[]      NOT NULL DEFAULT '{}',
    media_pending text[],
    erase_xid     xid8        NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX erasures_agents ON mobile.erasures USING gin (agent_ids);

-- Public read contract: the operator's erasure status.
CREATE VIEW mobile.erasure_progress AS
    SELECT erasure_id, farmer_id, started_at, attempts, last_error, completed_at, erased FROM mobile.erasures;

-- +goose Down
DROP VIEW mobile.erasure_progress;
DROP TABLE mobile.erasures;
DROP INDEX mobile.received_farmer;
ALTER TABLE mobile.received DROP COLUMN farmer_id;
