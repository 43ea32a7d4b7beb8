-- +goose Up
CREATE SCHEMA IF NOT EXISTS ingest;

-- submissions is the append-only raw record of everything ingested, exactly
-- once per record id. Rows are never updated or deleted.
CREATE TABLE ingest.submissions (
    id           uuid PRIMARY KEY,
    type         text        NOT NULL,
    captured_at  timestamptz NOT NULL,
    payload      jsonb       NOT NULL,
    canonical    bytea       NOT NULL,
    content_hash bytea       NOT NULL CHECK (length(content_hash) = 32),
    stream_seq   bigint      NOT NULL,
    ingested_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX submissions_type_ingested ON ingest.submissions (type, ingested_at);

-- +goose StatementBegin
CREATE FUNCTION ingest.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ingest.submissions is append-only';
END $$;
-- +goose StatementEnd
CREATE TRIGGER submissions_append_only BEFORE UPDATE OR DELETE ON ingest.submissions
    FOR EACH ROW EXECUTE FUNCTION ingest.forbid_change();

-- record_status is ingest's public read contract: other services (mobile-api's
-- status endpoint) read this view, never the table.
CREATE VIEW ingest.record_status AS
    SELECT id, 'ingested'::text AS status, NULL::text AS reason, ingested_at AS updated_at
    FROM ingest.submissions;

-- +goose Down
DROP SCHEMA ingest CASCADE;
