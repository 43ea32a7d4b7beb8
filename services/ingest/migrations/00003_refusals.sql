-- +goose Up
-- Records ingest refused (bad signature, revoked device, conflicting
-- content…), with the reason a field agent is shown. The message itself is
-- kept in the DEAD stream for operators to inspect and replay.
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

-- +goose Down
CREATE OR REPLACE VIEW ingest.record_status AS
    SELECT id, 'ingested'::text AS status, NULL::text AS reason, ingested_at AS updated_at
    FROM ingest.submissions;
DROP TABLE ingest.refusals;
