-- +goose Up
CREATE SCHEMA IF NOT EXISTS consent;

-- access_log is every read of a farmer's data by a bank or distributor,
-- allowed or denied: who (organization, key or user), which farmer, which
-- scopes, why, under which consent. An allowed row is written in the same
-- transaction as the read it records, so a read never happens unlogged.
CREATE TABLE consent.access_log (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                timestamptz NOT NULL DEFAULT now(),
    organization_id   uuid NOT NULL,
    credential        text NOT NULL,        -- key:<id> or user:<id>
    farmer_id         uuid NOT NULL,
    scopes            text[] NOT NULL,
    purpose           text NOT NULL,
    request_id        text NOT NULL,
    allowed           boolean NOT NULL,
    reason            text,                 -- why a read was denied
    consent_id        uuid,                 -- the consent that allowed it
    granted_record_id uuid                  -- its journaled consent.granted record (receipt)
);
CREATE INDEX access_log_farmer ON consent.access_log (farmer_id, at);
CREATE INDEX access_log_organization ON consent.access_log (organization_id, at);

-- +goose Down
DROP TABLE consent.access_log;
DROP SCHEMA consent;
