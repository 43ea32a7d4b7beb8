-- +goose Up
-- refusals: messages about farm records that a consumer dead-lettered
-- after mobile-api had acknowledged the record to the phone (refused as
-- invalid or conflicting, or given up on after repeated failures). It is a
-- projection of the DEAD stream, which holds the message durably before
-- the original leaves its stream; mobile-api's consumer of DEAD writes one
-- row per dead letter (idempotent on letter_id), so the phone is told
-- "refused" with the reason and operators get a list and a metric.
CREATE TABLE mobile.refusals (
    id          bigserial   PRIMARY KEY,           -- listing order, the admin cursor
    letter_id   text        NOT NULL UNIQUE,       -- the dead letter's message ID (else DEAD#<sequence>)
    record_id   uuid,                              -- NULL when the message names no record
    record_type text,
    subject     text        NOT NULL,              -- where the message was going (farm.submitted.*, farm.ingested.*)
    stage       text        NOT NULL,              -- the consumer that refused it: ingest, attest
    class       text        NOT NULL CHECK (class IN ('invalid', 'conflict', 'gave_up')),
    notice      text        NOT NULL,              -- the reason as the agent is shown it
    reason      text        NOT NULL,              -- the full reason, for operators
    dead_seq    bigint      NOT NULL,              -- its sequence in DEAD (gone once replayed)
    refused_at  timestamptz NOT NULL,              -- when the consumer dead-lettered it
    recorded_at timestamptz NOT NULL DEFAULT now(),
    change_xid  xid8        NOT NULL DEFAULT pg_current_xact_id() -- sync-down cursor (see farmers.go)
);
CREATE INDEX refusals_record ON mobile.refusals (record_id, id);
CREATE INDEX refusals_change ON mobile.refusals (change_xid);

-- Refusals ingest recorded itself before this table existed (its own
-- ingest.refusals, dropped by ingest's next migration). Their letter_id is
-- the one the dead letter of an honestly published record has, so the
-- projection of the same dead letter does not count it twice.
-- +goose StatementBegin
DO $$
BEGIN
    IF to_regclass('ingest.refusals') IS NOT NULL THEN
        INSERT INTO mobile.refusals (letter_id, record_id, record_type, subject, stage, class, notice, reason, dead_seq, refused_at)
        SELECT 'dead:ingest:' || f.record_id, f.record_id, r.type, 'farm.submitted.' || coalesce(r.type, 'unknown'), 'ingest',
               CASE WHEN f.reason LIKE '%different content%' OR f.reason LIKE '%another farmer%' THEN 'conflict' ELSE 'invalid' END,
               f.reason, f.reason, 0, f.refused_at
        FROM ingest.refusals f LEFT JOIN mobile.received r ON r.id = f.record_id
        ON CONFLICT (letter_id) DO NOTHING;
    END IF;
END $$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE mobile.refusals;
