-- +goose Up
-- Refusals are no longer ingest's to record: every dead letter, whichever
-- consumer wrote it and why, is projected into mobile.refusals (mobile-api
-- migrates the rows of this table there first). ingest's status view is
-- again what ingest stored.
CREATE OR REPLACE VIEW ingest.record_status AS
    SELECT id, 'ingested'::text AS status, NULL::text AS reason, ingested_at AS updated_at
    FROM ingest.submissions;
DROP TABLE ingest.refusals;

-- +goose Down
CREATE TABLE ingest.refusals (
    record_id  uuid PRIMARY KEY,
    reason     text        NOT NULL,
    refused_at timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE VIEW ingest.record_status AS
    SELECT id, 'ingested'::text AS status, NULL::text AS reason, ingested_at AS updated_at
    FROM ingest.submissions
    UNION ALL
    SELECT r.record_id, 'rejected', r.reason, r.refused_at
    FROM ingest.refusals r
    WHERE NOT EXISTS (SELECT 1 FROM ingest.submissions s WHERE s.id = r.record_id);
