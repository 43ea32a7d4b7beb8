-- +goose Up
CREATE SCHEMA IF NOT EXISTS events;

-- outbox holds every event an organization may receive, written by its
-- producer in the transaction of the change it reports (events.Record),
-- published to the EVENTS stream by the relay and kept for the retention
-- period, because replay and polling read it.
--
-- pos is the event's place in the order of publication, and the polling
-- cursor. One relay publishes at a time (an advisory lock) and numbers a
-- batch from a sequence in the transaction that holds the lock, so pos
-- becomes visible in increasing order: a cursor over it never skips an
-- event that commits late (seq, an identity, can commit out of order;
-- stream_seq can repeat an old value when a lost acknowledgement makes a
-- publish a duplicate).
CREATE TABLE events.outbox (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              uuid NOT NULL UNIQUE,            -- becomes webhook-id
    type            text NOT NULL,
    organization_id uuid,                            -- the recipient; NULL: every organization with a live consent of farmer_id covering scope
    farmer_id       uuid,
    scope           text,                            -- set: delivered only under a live consent of farmer_id covering it
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    data            jsonb NOT NULL,
    published_at    timestamptz,
    stream_seq      bigint,                          -- its sequence in EVENTS
    pos             bigint UNIQUE,
    CHECK (organization_id IS NOT NULL OR (farmer_id IS NOT NULL AND scope IS NOT NULL)),
    CHECK ((published_at IS NULL) = (pos IS NULL))
);
CREATE SEQUENCE events.outbox_pos;
CREATE INDEX outbox_unpublished ON events.outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_organization ON events.outbox (organization_id, pos) WHERE organization_id IS NOT NULL;
CREATE INDEX outbox_farmer ON events.outbox (farmer_id) WHERE farmer_id IS NOT NULL; -- a farmer's erasure
CREATE INDEX outbox_recorded ON events.outbox (recorded_at);

-- +goose Down
DROP TABLE events.outbox;
DROP SEQUENCE events.outbox_pos;
DROP SCHEMA events;
