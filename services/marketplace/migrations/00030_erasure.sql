-- +goose Up
-- erasures is the marketplace's part of farmers' erasures (see
-- internal/forget): one row per erasure it ran. A farmer with a row is
-- forgotten: no order is placed for them and no record of theirs is
-- projected from then on, and no farmer-level read names them.
--
-- Orders and deliveries are the distributor's commercial records (what
-- was sold, for how much, paid how, delivered when): they are kept, and
-- the farmer in them is replaced by pseudonym, a random id drawn once per
-- erasure that nothing else in Tani knows. What only describes the farmer
-- (the plot, where the goods were received, the photo of them) is erased.
CREATE TABLE marketplace.erasures (
    erasure_id   uuid        PRIMARY KEY,
    farmer_id    uuid        NOT NULL UNIQUE,
    pseudonym    uuid        NOT NULL DEFAULT gen_random_uuid(),
    started_at   timestamptz NOT NULL DEFAULT now(),
    attempts     int         NOT NULL DEFAULT 1,
    last_error   text,
    completed_at timestamptz,
    erased       jsonb       -- counts of what was erased, never the data
);

-- Public read contract: the operator's erasure status.
CREATE VIEW marketplace.erasure_progress AS
    SELECT erasure_id, farmer_id, started_at, attempts, last_error, completed_at, erased FROM marketplace.erasures;

ALTER TABLE marketplace.orders ADD COLUMN farmer_erased boolean NOT NULL DEFAULT false;
ALTER TABLE marketplace.deliveries ADD COLUMN farmer_erased boolean NOT NULL DEFAULT false;
ALTER TABLE marketplace.deliveries ALTER COLUMN lat DROP NOT NULL;
ALTER TABLE marketplace.deliveries ALTER COLUMN lon DROP NOT NULL;
ALTER TABLE marketplace.deliveries ALTER COLUMN photo_hash DROP NOT NULL;
CREATE INDEX deliveries_farmer ON marketplace.deliveries (farmer_id);

-- +goose Down
DROP INDEX marketplace.deliveries_farmer;
ALTER TABLE marketplace.deliveries DROP COLUMN farmer_erased;
ALTER TABLE marketplace.orders DROP COLUMN farmer_erased;
DROP VIEW marketplace.erasure_progress;
DROP TABLE marketplace.erasures;
