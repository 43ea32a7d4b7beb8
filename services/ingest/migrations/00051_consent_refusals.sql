-- +goose Up
-- The consent service finds the refusal of a request by its id.
CREATE INDEX submissions_consent_refused ON ingest.submissions (((payload->>'consent_id')::uuid))
    WHERE type = 'consent.refused';

-- Public read contract: farmers' refusals of organizations' consent
-- requests, from signed consent.refused records (consent_id is the
-- request's id).
CREATE VIEW ingest.consent_refusals AS
SELECT (payload->>'consent_id')::uuid AS consent_id,
       (payload->>'farmer_id')::uuid AS farmer_id,
       (payload->>'grantee_organization_id')::uuid AS grantee_org_id,
       nullif(payload->>'reason', '') AS reason,
       id AS refused_record_id,
       captured_at AS refused_at
FROM ingest.submissions
WHERE type = 'consent.refused';

-- +goose Down
DROP VIEW ingest.consent_refusals;
DROP INDEX ingest.submissions_consent_refused;
