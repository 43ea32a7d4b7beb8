-- +goose Up
-- erasures is the consent module's part of farmers' erasures (see
-- internal/forget): one row per erasure it ran. A farmer with a row is
-- forgotten: no consent request may be made to them, and the sweep records
-- and journals no expiry about them. consent_ids (the farmer's consents and
-- requests, whose journal entries the erasure redacts) is working state,
-- kept only until the erasure completes.
CREATE TABLE consent.erasures (
    erasure_id   uuid        PRIMARY KEY,
    farmer_id    uuid        NOT NULL UNIQUE,
    started_at   timestamptz NOT NULL DEFAULT now(),
    attempts     int         NOT NULL DEFAULT 1,
    last_error   text,
    completed_at timestamptz,
    erased       jsonb,      -- counts of what was erased, never the data
    consent_ids  uuid[]
);

-- Public read contract: the operator's erasure status.
CREATE VIEW consent.erasure_progress AS
    SELECT erasure_id, farmer_id, started_at, attempts, last_error, completed_at, erased FROM consent.erasures;

-- The access log outlives a farmer's erasure, pseudonymised: who read,
-- when, which scopes, why and under which consent stay (a regulator, or
-- the farmer through the operator, may ask who looked); the farmer's id
-- is replaced by the erasure's id.
ALTER TABLE consent.access_log ALTER COLUMN farmer_id DROP NOT NULL;
ALTER TABLE consent.access_log ADD COLUMN erasure_id uuid;
ALTER TABLE consent.access_log ADD CONSTRAINT access_log_farmer_or_erasure CHECK ((farmer_id IS NULL) <> (erasure_id IS NULL));
CREATE INDEX access_log_erasure ON consent.access_log (erasure_id, at) WHERE erasure_id IS NOT NULL;

-- The farmers' view (their access log, the SMS digest) names a farmer in
-- every row: rows of erased farmers are no farmer's any more.
CREATE OR REPLACE VIEW consent.access_entries AS
SELECT l.id, l.at, l.farmer_id, l.organization_id, o.name AS organization_name, o.kind AS organization_kind,
       l.credential, l.scopes, l.purpose, l.request_id, l.allowed, l.reason, l.consent_id, l.granted_record_id, l.erasure_id
FROM consent.access_log l
JOIN identity.organizations o ON o.id = l.organization_id
WHERE l.farmer_id IS NOT NULL;

-- The operators' view (not a public contract): every row, erased
-- farmers' under their erasure's id.
CREATE VIEW consent.all_access_entries AS
SELECT l.id, l.at, l.farmer_id, l.organization_id, o.name AS organization_name, o.kind AS organization_kind,
       l.credential, l.scopes, l.purpose, l.request_id, l.allowed, l.reason, l.consent_id, l.granted_record_id, l.erasure_id
FROM consent.access_log l
JOIN identity.organizations o ON o.id = l.organization_id;

-- +goose Down
DROP VIEW consent.all_access_entries;
DROP VIEW consent.access_entries;
CREATE VIEW consent.access_entries AS
SELECT l.id, l.at, l.farmer_id, l.organization_id, o.name AS organization_name, o.kind AS organization_kind,
       l.credential, l.scopes, l.purpose, l.request_id, l.allowed, l.reason, l.consent_id, l.granted_record_id
FROM consent.access_log l
JOIN identity.organizations o ON o.id = l.organization_id;
DROP INDEX consent.access_log_erasure;
ALTER TABLE consent.access_log DROP CONSTRAINT access_log_farmer_or_erasure;
DELETE FROM consent.access_log WHERE farmer_id IS NULL;
ALTER TABLE consent.access_log DROP COLUMN erasure_id;
ALTER TABLE consent.access_log ALTER COLUMN farmer_id SET NOT NULL;
DROP VIEW consent.erasure_progress;
DROP TABLE consent.erasures;
